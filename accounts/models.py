from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F, Q


class User(AbstractUser):
    """A Parley member. Signs in by username or email; shown to others by `name`."""

    display_name = models.CharField(
        max_length=50,
        blank=True,
        help_text="How other members see you. Leave empty to use your username.",
    )
    # When the member's last page closed (or their server process vanished): "Last seen …".
    # Kept in the database so that it survives restarts.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set by calls through accounts.presence.presence_set_in_call: contacts see "In a call".
    in_call = models.BooleanField(default=False)

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def __str__(self) -> str:
        return self.name


class ContactRequest(models.Model):
    """A member asking another to become contacts: at most one per ordered pair.

    A request to someone who has blocked the sender is kept with `delivered` off: the sender sees
    it as sent, the recipient never sees it, so a block is never revealed.
    """

    sender = models.ForeignKey(User, on_delete=models.CASCADE, related_name="requests_sent")
    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="requests_received")
    delivered = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sender", "recipient"], name="one_request_per_pair"),
            models.CheckConstraint(
                condition=~Q(sender=F("recipient")), name="no_request_to_oneself"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sender_id} asks {self.recipient_id}"


class Contact(models.Model):
    """One side of an accepted pair of contacts. A pair is two rows, one per member, so a
    member's contacts are one filter on `member`."""

    member = models.ForeignKey(User, on_delete=models.CASCADE, related_name="contacts")
    other = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "other"], name="one_contact_per_pair"),
            models.CheckConstraint(condition=~Q(member=F("other")), name="no_contact_with_oneself"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} knows {self.other_id}"


class Block(models.Model):
    """`blocker` has blocked `blocked`: no requests, messages or presence between them."""

    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="one_block_per_pair"),
            models.CheckConstraint(condition=~Q(blocker=F("blocked")), name="no_blocking_oneself"),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"
