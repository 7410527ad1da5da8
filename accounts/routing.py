from django.urls import path

from accounts.consumers import MemberConsumer

websocket_urlpatterns = [
    path("ws/member/", MemberConsumer.as_asgi()),
]
