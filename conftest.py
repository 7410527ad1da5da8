"""Fixtures shared by every test: factories first, composed into what tests ask for."""

import itertools

import pytest
from django.conf import settings
from django.test import Client

PASSWORD = "a-long-and-unguessable-passphrase"


@pytest.fixture
def user_factory(django_user_model):
    numbers = itertools.count(1)

    def make(**fields):
        n = next(numbers)
        fields.setdefault("username", f"member{n}")
        fields.setdefault("email", f"{fields['username']}@example.org")
        password = fields.pop("password", PASSWORD)
        return django_user_model.objects.create_user(password=password, **fields)

    return make


@pytest.fixture
def user(user_factory):
    return user_factory(username="ada", email="ada@example.org", display_name="Ada Lovelace")


@pytest.fixture
def auth_client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def session_cookie_factory():
    """Log a member in and return the Cookie header a browser would send with that session."""

    def make(member) -> bytes:
        client = Client()
        client.force_login(member)
        session_id = client.cookies[settings.SESSION_COOKIE_NAME].value
        return f"{settings.SESSION_COOKIE_NAME}={session_id}".encode()

    return make


@pytest.fixture
def site_socket(session_cookie_factory):
    """A WebSocket to `path` as `member`, with the headers a page of this site sends; the test
    connects it."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from parley.asgi import application

    async def make(path: str, member) -> WebsocketCommunicator:
        cookie = await database_sync_to_async(session_cookie_factory)(member)
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"cookie", cookie),
        ]
        return WebsocketCommunicator(application, path, headers=headers)

    return make


@pytest.fixture
def room_factory(user_factory):
    from rooms import services

    def make(owner=None, **fields):
        fields.setdefault("name", "General")
        return services.room_create(creator=owner or user_factory(), **fields)

    return make


@pytest.fixture
def duo(user_factory, room_factory):
    """Ada and Bob, both in one public room that Ada owns."""
    from types import SimpleNamespace

    from rooms import services

    ada = user_factory(username="ada")
    bob = user_factory(username="bob")
    room = room_factory(owner=ada)
    services.room_join(room=room, member=bob)
    return SimpleNamespace(ada=ada, bob=bob, room=room)
