"""The ICE servers a call's page gets: STUN and TURN from settings, TURN credentials per call.

TURN credentials follow the TURN REST scheme that coturn implements with `use-auth-secret` and
`static-auth-secret`: the username is "<expiry unix time>:<anything>" and the password is
base64(HMAC-SHA1(secret, username)). coturn recomputes the password from the username and
refuses it once the expiry has passed, so Parley and coturn share only the secret, nothing is
stored, and a credential that leaks from a page is worth TURN_CREDENTIAL_TTL seconds of relay
and names the member and call it was minted for. They reach the page only in the call socket's
`welcome` frame, never in HTML or a static file.
"""

import base64
import hashlib
import hmac
import logging
import re
import time

from django.conf import settings

logger = logging.getLogger(__name__)

TURN_SCHEMES = ("turn", "turns")
STUN_SCHEMES = ("stun", "stuns")

# RFC 7064 (stun:, stuns:) and RFC 7065 (turn:, turns:): scheme ":" host [":" port], and for TURN
# an optional "?transport=udp|tcp". A page whose RTCPeerConnection refuses its configuration can
# make no call at all, so anything a browser might refuse is refused here first.
_AFTER_SCHEME = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?:udp|tcp))?"
)


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why `url` is not a usable ICE server URL with one of `schemes`, or None if it is."""
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in schemes:
        return f"it must start with {' or '.join(s + ':' for s in schemes)}"
    if rest.startswith("//"):
        return f"write {scheme}:host:port, without '//'"
    if scheme in STUN_SCHEMES and "?" in rest:
        return "a STUN URL takes no ?transport= (only TURN URLs do)"
    found = _AFTER_SCHEME.fullmatch(rest)
    if not found:
        shape = f"{scheme}:host:port" + ("?transport=udp|tcp" if scheme in TURN_SCHEMES else "")
        return f"it must look like {shape}"
    if found["port"] and not 0 < int(found["port"]) < 65536:
        return "its port must be between 1 and 65535"
    return None


def turn_username(*, member_id: int, call_id: int, now: float | None = None) -> str:
    """The REST username: when the credential expires, then whose and which call's it is."""
    expiry = int(time.time() if now is None else now) + settings.TURN_CREDENTIAL_TTL
    return f"{expiry}:{member_id}-{call_id}"


def turn_password(*, secret: str, username: str) -> str:
    """The password coturn expects for `username`: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _usable(urls: list[str], schemes: tuple[str, ...], setting: str) -> list[str]:
    """The URLs a browser will accept. The system checks refuse bad ones at deploy time; if one
    slips through anyway, the page still gets the others rather than a configuration that
    RTCPeerConnection throws out whole."""
    good = []
    for url in urls:
        problem = url_problem(url, schemes)
        if problem:
            logger.warning("%s: ignoring %r: %s", setting, url, problem)
        else:
            good.append(url)
    return good


def ice_config(*, member_id: int, call_id: int) -> dict:
    """The RTCPeerConnection configuration for `member_id`'s page in call `call_id`.

    With nothing configured the list is empty and calls use host candidates, which is enough on
    one network. TURN needs both TURN_URLS and TURN_SECRET: a TURN server without credentials
    would only answer 401."""
    servers: list[dict] = []
    stun = _usable(settings.STUN_URLS, STUN_SCHEMES, "STUN_URLS")
    if stun:
        servers.append({"urls": stun})
    turn = _usable(settings.TURN_URLS, TURN_SCHEMES, "TURN_URLS")
    if turn and settings.TURN_SECRET:
        username = turn_username(member_id=member_id, call_id=call_id)
        servers.append(
            {
                "urls": turn,
                "username": username,
                "credential": turn_password(secret=settings.TURN_SECRET, username=username),
            }
        )
    return {
        "iceServers": servers,
        "iceTransportPolicy": "relay" if settings.CALL_FORCE_RELAY else "all",
    }
