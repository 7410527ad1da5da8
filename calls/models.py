from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q


def seat_group(call_id: int, member_id: int) -> str:
    """The channel-layer group of one participant's call pages: the newest takes the seat."""
    return f"call-{call_id}-seat-{member_id}"


class Call(models.Model):
    """A call from `caller` to `callee`: rings, is answered, ends; every change goes through
    calls.services. The states only move forward: ringing → active → ended, or ringing → ended.
    """

    class State(models.TextChoices):
        RINGING = "ringing"
        ACTIVE = "active"
        ENDED = "ended"

    class Outcome(models.TextChoices):
        COMPLETED = "completed"  # answered, then hung up (or a page gone for good)
        DECLINED = "declined"
        CANCELLED = "cancelled"  # the caller hung up while it rang
        MISSED = "missed"  # no answer within CALL_RING_TIMEOUT
        BUSY = "busy"  # the callee was in another call
        FAILED = "failed"  # answered, but no media connection within CALL_CONNECT_TIMEOUT

    LIVE = (State.RINGING, State.ACTIVE)

    caller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    callee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The pair's direct conversation: where the call's row goes when it ends.
    room = models.ForeignKey("rooms.Room", null=True, on_delete=models.SET_NULL, related_name="+")
    video = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RINGING)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    # A call to someone who blocked the caller: it rings nowhere and ends as missed.
    silent = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When each participant's call page last said it is there (calls.services.call_seen).
    caller_seen_at = models.DateTimeField(null=True, blank=True)
    callee_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state"], name="call_state")]
        constraints = [
            models.CheckConstraint(condition=~Q(caller=F("callee")), name="no_call_to_oneself"),
        ]

    def __str__(self) -> str:
        return f"call {self.pk}: {self.caller_id} → {self.callee_id} ({self.state})"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("call", args=[self.pk])

    @property
    def group(self) -> str:
        """Every call page of both participants: told when the call changes state."""
        return f"call-{self.pk}"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE

    @property
    def kind_label(self) -> str:
        return "Video call" if self.video else "Audio call"

    def has(self, member_id: int) -> bool:
        return member_id in (self.caller_id, self.callee_id)

    def other_id(self, member_id: int) -> int:
        return self.callee_id if member_id == self.caller_id else self.caller_id

    @property
    def duration(self) -> timedelta | None:
        """How long the two were connected: from the answer to the end."""
        if self.answered_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.answered_at


class Line(models.Model):
    """A member's line, taken by their one call while it rings or is active.

    The primary key is the member, so two calls can never hold one member's line at once,
    whatever the database and however the requests race.
    """

    member = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="lines")

    def __str__(self) -> str:
        return f"{self.member_id} on call {self.call_id}"


def duration_text(duration: timedelta | None) -> str:
    """0:07, 12:34, 1:02:03."""
    seconds = int(duration.total_seconds()) if duration else 0
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"
