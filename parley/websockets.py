"""ASGI middleware for Parley's WebSockets."""

from functools import partial
from urllib.parse import urlsplit

from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, the port filled in; None when it is not one."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


class SameOrigin:
    """Refuse the handshake of a socket whose page is not this site's own.

    The handshake's Host must be one of ALLOWED_HOSTS (Django's rules, as for a request), and
    its Origin the very origin the handshake came to: the scheme (https when the proxy says so
    through SECURE_PROXY_SSL_HEADER, as for Django's own checks), that host and its port; or one
    of CSRF_TRUSTED_ORIGINS. It is the check Django's CSRF middleware makes of a form's Origin,
    made for sockets. Channels' AllowedHostsOriginValidator, which this replaces, compared only
    the Origin's host with ALLOWED_HOSTS, so a page of another site on the same host, on another
    port or over plain http (cookies ignore ports, so its sockets carry the member's session),
    could open a socket as the member.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.inner(scope, receive, send)

    @staticmethod
    def allowed(scope) -> bool:
        headers = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.lower(), value.decode("latin-1"))
        host, origin = headers.get(b"host", ""), _origin(headers.get(b"origin", ""))
        domain, _ = split_domain_port(host)
        allowed_hosts = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed_hosts:
            allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host
        if origin is None or not domain or not validate_host(domain, allowed_hosts):
            return False
        if origin in [_origin(url) for url in settings.CSRF_TRUSTED_ORIGINS]:
            return True
        return origin == _origin(f"{_scheme(scope, headers)}://{host}")


def _scheme(scope, headers: dict[bytes, str]) -> str:
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if headers.get(header, "").split(",")[0].strip() == value:
            return "https"
    return "http"


class MembersOnly(BaseMiddleware):
    """Refuse the handshake of a socket without a signed-in member.

    Sits inside AuthMiddlewareStack, so scope["user"] is known; an anonymous socket is closed
    before it is accepted (the browser sees HTTP 403) and no consumer code ever runs for it.
    """

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is not None and user.is_authenticated:
            return await self.inner(scope, receive, send)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})


class FreedOnClose:
    """Under daphne, a closed connection's objects are freed at once, not by a full collection.

    daphne's objects for one WebSocket (about 55 of them, some 19 KiB) form two reference cycles
    that outlive the connection: autobahn resolves the protocol's `is_closed` with the protocol
    itself, and Twisted's HTTP channel keeps in its `requests` the request that was upgraded,
    which points back at it (and at the connection's transport). The connection lived as long as
    the socket, so the cycles are in the oldest generation, which parley/asgi.py's tuning
    collects rarely: a process whose sockets open and close grows by 19 KiB a socket until a
    full collection, which then stops it for 100-300 ms (docs/performance.md, "Presence",
    finding 3). So when the connection closes, both links are dropped; nothing reads them then.

    daphne hands the application `partial(Server.handle_reply, protocol)` as `send`; under any
    other server (or a test's communicator) `send` is something else and this does nothing.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        protocol = send.args[0] if isinstance(send, partial) and send.args else None
        is_closed = getattr(protocol, "is_closed", None)
        if hasattr(is_closed, "addBoth"):
            # The channel is the transport's producer until the transport is lost.
            http_channel = getattr(getattr(protocol, "transport", None), "producer", None)
            is_closed.addBoth(self.release, http_channel)
        return await self.inner(scope, receive, send)

    @staticmethod
    def release(protocol, http_channel) -> None:
        requests = getattr(http_channel, "requests", None)
        if isinstance(requests, list):
            requests.clear()
        # Returning None makes None the Deferred's result, in place of the protocol.
