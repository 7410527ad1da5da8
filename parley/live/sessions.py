"""Whether the session a socket opened with still signs its member in.

A socket is authenticated once, at its handshake. When what a session rests on changes (the
member's password, or whether they may sign in at all) the socket is told to look again, and
applies Django's own rule (django.contrib.auth.get_user): the session must still exist and name
the member, the member must still be able to sign in (is_active), and the auth hash stored in
the session must still equal the member's. It never changes the session itself.
"""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.utils.crypto import constant_time_compare

from parley.live.members import session_tag

# The event that asks a member's sockets to look again ("session.recheck"), sent to the member's
# group and to each of their rooms' groups:
#   member_id: whose sockets look; kept, kept_as: session tags (may be empty) - the session
#   that made the change in that browser and the one it goes on as.
RECHECK = "session.recheck"


class SocketSession:
    """The session a socket opened with, followed as it moves to a new key."""

    def __init__(self, scope: dict):
        self.member_id = scope["user"].pk
        self.opened_with = scope["session"]  # loaded while the handshake authenticated it
        self.key: str | None = self.opened_with.session_key
        self.tag = session_tag(self.key)
        self.auth_hash = ""  # only once it has moved: the hash it moved with

    def ended_by(self, event: dict) -> bool:
        """Whether a "session.ended" event (a logout) is about this socket's session."""
        return event["session"] == self.tag

    def still_signs_in(self, event: dict) -> bool:
        """Look again, after a RECHECK event. Reads the database: call it from a thread."""
        if event.get("kept") and event["kept"] == self.tag:
            # The member changed the password in this very browser: its session was given a new
            # key and the new hash (update_session_auth_hash), so this socket goes on with it.
            # The new key never travels over the channel layer, only its tag; from now on the
            # hash it moved with is what must still match.
            member = self._member(self.opened_with.get(BACKEND_SESSION_KEY))
            if member is None:
                return False
            self.key, self.tag = None, event.get("kept_as", "")
            self.auth_hash = member.get_session_auth_hash()
            return True
        if self.key is None:
            member = self._member(self.opened_with.get(BACKEND_SESSION_KEY))
            return member is not None and self._matches(self.auth_hash, member)
        stored = import_module(settings.SESSION_ENGINE).SessionStore(self.key)
        try:
            member_id = get_user_model()._meta.pk.to_python(stored[SESSION_KEY])
            backend_path = stored[BACKEND_SESSION_KEY]
        except KeyError:
            return False  # the session is gone
        if member_id != self.member_id:
            return False
        member = self._member(backend_path)
        return member is not None and self._matches(stored.get(HASH_SESSION_KEY, ""), member)

    def _member(self, backend_path: str | None):
        """The member, if they can still sign in through that backend (None if inactive)."""
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return None
        return load_backend(backend_path).get_user(self.member_id)

    @staticmethod
    def _matches(auth_hash: str, member) -> bool:
        if not auth_hash:
            return False
        hashes = (member.get_session_auth_hash(), *member.get_session_auth_fallback_hash())
        return any(constant_time_compare(auth_hash, current) for current in hashes)
