"""While Redis is away the cache answers empty (limits fail open) instead of failing requests."""

import logging
import shutil

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.urls import reverse

from conftest import PASSWORD
from parley.limits import count_within
from parley.tests.engines import PrivateRedis, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (Debian: redis-server)"
)


def redis_cache_at(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "parley.cache.FailOpenRedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "KEY_PREFIX": "test-fail-open",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }


def test_while_redis_is_away_the_cache_answers_empty_and_counts_from_one(caplog):
    caplog.set_level(logging.WARNING, logger="parley.cache")
    with override_settings(CACHES=redis_cache_at(free_port())):  # nothing listens there
        cache = caches["default"]
        assert cache.set("k", "v") is None
        assert cache.get("k", "absent") == "absent"
        assert cache.add("k", 1) is True
        assert cache.get_many(["k"]) == {}
        assert count_within("flood:1", 60) == 1
        assert count_within("flood:1", 60) == 1  # nothing is kept, so nothing is ever over
    assert "Redis unreachable" in caplog.text


def test_log_in_works_while_redis_is_away(client, user):
    # allauth counts log-in attempts in the cache; with Redis away that was a 500.
    with override_settings(CACHES=redis_cache_at(free_port())):
        response = client.post(
            reverse("account_login"), {"login": user.email, "password": PASSWORD}
        )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_the_cache_keeps_and_counts_again_once_redis_is_back():
    port = free_port()
    with override_settings(CACHES=redis_cache_at(port)):
        cache = caches["default"]
        cache.set("k", "lost")  # Redis is away: forgotten
        with PrivateRedis(port):
            cache.set("k", "kept")
            assert cache.get("k") == "kept"
            assert [count_within("flood:2", 60) for _ in range(3)] == [1, 2, 3]
