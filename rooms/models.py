from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

MESSAGE_MAX_LENGTH = 4000


def room_group(room_id: int) -> str:
    """The channel-layer group of a room: built from its id, never from its name."""
    return f"room-{room_id}"


def direct_pair(a_id: int, b_id: int) -> str:
    """The `direct_pair` of two members' conversation: the same whichever of them asks."""
    low, high = sorted((a_id, b_id))
    return f"{low}:{high}"


class Room(models.Model):
    class Kind(models.TextChoices):
        GROUP = "group", "Room"
        DIRECT = "direct", "Direct conversation"

    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=100, unique=True)
    topic = models.CharField(max_length=200, blank=True)
    is_private = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The seq of the newest message. Messages are numbered 1, 2, 3… per room, under a lock on
    # this row, so a room's messages commit in seq order and a gap always means "not seen yet".
    last_seq = models.PositiveBigIntegerField(default=0)
    last_activity_at = models.DateTimeField(auto_now_add=True)
    # A direct conversation is a private room of exactly two members, one per pair of members:
    # `direct_pair` is "<smaller id>:<larger id>". It is never listed, left or invited to.
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GROUP)
    direct_pair = models.CharField(max_length=41, null=True, blank=True, unique=True)
    # A direct conversation whose two members are no longer contacts: history kept, no new
    # messages until they are contacts again.
    is_read_only = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # The directory: public rooms, most recently active first.
            models.Index(fields=["is_private", "-last_activity_at"], name="room_directory"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("room", kwargs={"slug": self.slug})

    @property
    def group(self) -> str:
        return room_group(self.pk)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    # The seq of the newest message this member has seen in this room.
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "member"], name="one_membership_per_room"),
        ]
        indexes = [models.Index(fields=["member", "room"], name="membership_by_member")]

    def __str__(self) -> str:
        return f"{self.member} in {self.room}"


class Message(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text"
        CALL = "call"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)
    # A row the site writes about an event, shown apart from what members write: a call's
    # outcome, written by calls (its text is theirs; rooms only shows it).
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TEXT)
    # The sender's idempotency key with a digest of the body: a retried send finds its message.
    client_key = models.CharField(max_length=80, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="one_message_per_seq"),
            models.UniqueConstraint(
                fields=["author", "client_key"],
                condition=~Q(client_key=""),
                name="one_message_per_send",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} in {self.room_id}"
