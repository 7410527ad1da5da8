"""Fixtures shared by every test: factories first, composed into what tests ask for."""

import itertools

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections
from django.test import Client

PASSWORD = "a-long-and-unguessable-passphrase"


@pytest.fixture(autouse=True)
def sync_thread_connections_closed():
    """After each test, the thread that runs async code's database work has no connection open.

    An async test's database_sync_to_async work runs in asgiref's one shared thread, and
    channels.testing turns close_old_connections into a no-op while a communicator talks, so a
    connection opened there stays open. The consumer closes it again when it handles a
    disconnect; a socket refused before any consumer ran (MembersOnly), or closed by the server,
    never does. Left open, it outlived the test and, after the last test, made dropping the test
    database fail ("being accessed by other users"). Under daphne close_old_connections is real,
    so this is the tests' leak, not the server's.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """Passwords hashed with MD5, not PBKDF2's million rounds (a third of a second a member here,
    a whole minute for a test of 150 members), as Django's testing docs advise. Not in browser
    tests: their server is another process, which must read the hashes it checks."""
    if request.node.get_closest_marker("e2e") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def requests_not_yet_counted(request):
    """Each test starts with nothing counted in the cache: the rate limits on forms
    (parley/ratelimits.py), the message flood limit and the contact-request limit count by member
    id, ids repeat from test to test, and the counts would add up over a whole run. Not in
    browser tests: their server is another process, with a cache of its own."""
    if request.node.get_closest_marker("e2e") is None:
        from django.core.cache import cache

        cache.clear()


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


@pytest.fixture
def client_of():
    """A factory of test clients, each signed in as the member given."""

    def make(member, **options):
        client = Client(**options)
        client.force_login(member)
        return client

    return make
