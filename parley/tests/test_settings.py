"""The settings module read under different environments.

Each environment is loaded into a fresh module object, so the running Django is not touched;
the start-up checks run manage.py in a subprocess, exactly as an operator would.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = ROOT / "parley" / "settings.py"
VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_HOST",
    "ACCOUNT_EMAIL_VERIFICATION",
    "SECURE_SSL_REDIRECT",
    "REDIS_CHANNEL_LAYER",
    "REDIS_PREFIX",
    "PRESENCE_TTL",
)
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "9fQ2-xk7Lw_PzR4vN8mTb1yH6cJ0sDaE3uGiKoVqWnYt5ZrX-BpMeCfSjAhUlIdO",
    "ALLOWED_HOSTS": "chat.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.org",
    "DATABASE_URL": "postgres://parley:secret@db.internal:5432/parley",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "EMAIL_HOST": "smtp.example.org",
}


def load_settings(**env):
    saved = {name: os.environ.pop(name, None) for name in VARIABLES}
    os.environ.update(env)
    try:
        spec = importlib.util.spec_from_file_location("settings_under_test", SETTINGS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name in VARIABLES:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_without_variables_local_development_uses_sqlite_and_in_memory_layer():
    settings = load_settings(DEBUG="1")
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings.DATABASES["default"]["NAME"] == str(ROOT / "db.sqlite3")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")
    assert (
        settings.MAILERS["default"]["BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    )
    assert settings.ACCOUNT_EMAIL_VERIFICATION == "none"


def test_database_url_selects_postgresql_with_a_connection_pool():
    settings = load_settings(DEBUG="1", DATABASE_URL=PRODUCTION["DATABASE_URL"])
    database = settings.DATABASES["default"]
    assert database["ENGINE"] == "parley.postgresql"  # Django's, failing fast while it is away
    assert (database["HOST"], database["NAME"], database["USER"]) == (
        "db.internal",
        "parley",
        "parley",
    )
    # Connections that died with a restarted server are dropped when the pool hands them out.
    assert database["OPTIONS"]["pool"]["check"].__module__ == "parley.postgresql.base"
    assert database["OPTIONS"]["pool"]["timeout"] == 5


def test_redis_url_selects_the_redis_channel_layer_and_cache():
    settings = load_settings(DEBUG="1", REDIS_URL=PRODUCTION["REDIS_URL"])
    layer = settings.CHANNEL_LAYERS["default"]
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["hosts"] == [PRODUCTION["REDIS_URL"]]
    assert settings.CACHES["default"] == {
        "BACKEND": "parley.cache.FailOpenRedisCache",
        "LOCATION": PRODUCTION["REDIS_URL"],
        "KEY_PREFIX": "parley",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_redis_prefix_starts_the_channel_layers_names_and_the_cache_keys(layer):
    settings = load_settings(
        DEBUG="1",
        REDIS_URL=PRODUCTION["REDIS_URL"],
        REDIS_CHANNEL_LAYER=layer,
        REDIS_PREFIX="chat-2",
    )
    assert settings.REDIS_PREFIX == "chat-2"
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == "chat-2"
    assert settings.CACHES["default"]["KEY_PREFIX"] == "chat-2"


def test_a_redis_prefix_that_could_not_name_a_group_is_refused():
    with pytest.raises(ImproperlyConfigured, match="REDIS_PREFIX"):
        load_settings(DEBUG="1", REDIS_PREFIX="two words")


def test_a_malformed_presence_timing_is_refused_with_the_variable_named():
    with pytest.raises(ImproperlyConfigured, match="PRESENCE_TTL must be a number"):
        load_settings(DEBUG="1", PRESENCE_TTL="45s")
    assert load_settings(DEBUG="1", PRESENCE_TTL="2.5").PRESENCE_TTL == 2.5


def test_production_turns_on_secure_cookies_hsts_proxy_header_and_email_verification():
    settings = load_settings(**PRODUCTION)
    assert settings.DEBUG is False
    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True
    assert settings.SECURE_SSL_REDIRECT is True
    assert settings.SECURE_HSTS_SECONDS >= 60 * 60 * 24 * 365
    assert settings.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory"
    mailer = settings.MAILERS["default"]
    assert mailer["BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (mailer["OPTIONS"]["host"], mailer["OPTIONS"]["use_tls"]) == ("smtp.example.org", True)
    assert settings.ALLOWED_HOSTS == ["chat.example.org"]
    assert settings.CSRF_TRUSTED_ORIGINS == ["https://chat.example.org"]


def test_a_malformed_boolean_is_refused_with_the_variable_named():
    with pytest.raises(Exception, match="DEBUG must be a boolean"):
        load_settings(DEBUG="maybe")


def test_start_up_with_debug_off_and_no_secret_key_fails_with_a_clear_message():
    result = manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "DEBUG=1" in result.stderr


def test_check_deploy_with_production_variables_prints_no_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stderr
