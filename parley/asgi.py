"""ASGI entry point: daphne serves HTTP and WebSockets from here.

The order follows the Channels tutorial: Django's ASGI application is built first so that the
app registry is ready before anything imports models.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parley.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from parley.routing import websocket_urlpatterns  # noqa: E402
from parley.websockets import MembersOnly  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(MembersOnly(URLRouter(websocket_urlpatterns)))
        ),
    }
)
