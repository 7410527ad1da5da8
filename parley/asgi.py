"""ASGI entry point: daphne serves HTTP and WebSockets from here.

The order follows the Channels tutorial: Django's ASGI application is built first so that the
app registry is ready before anything imports models.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parley.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from parley.live.transport import BoundedSend  # noqa: E402
from parley.routing import websocket_urlpatterns  # noqa: E402
from parley.websockets import FreedOnClose, MembersOnly, SameOrigin  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # BoundedSend: a socket that stops reading is closed before it grows the process.
        # SameOrigin: only this site's own pages may open a socket (scheme, host and port).
        "websocket": FreedOnClose(
            BoundedSend(
                SameOrigin(AuthMiddlewareStack(MembersOnly(URLRouter(websocket_urlpatterns))))
            )
        ),
    }
)

# Garbage collection for a process that holds many sockets (docs/performance.md, "Pauses"). A
# full collection walks every tracked object, some 190 per open socket, and stops the event loop
# for 100-200 ms at 1,000 sockets. What exists once the application is loaded lives as long as
# the process, so the collector stops looking at it; and the young generation is collected after
# 10,000 new objects instead of 2,000, so the short-lived objects of one message's fan-out to a
# thousand sockets are not promoted to the old generation, whose growth sets off full collections.
# Rare full collections are safe because a closed socket leaves no cyclic garbage: refcounting
# frees our consumers, and FreedOnClose breaks the cycles of daphne's connection objects.
gc.freeze()
gc.set_threshold(10_000, 10, 10)
