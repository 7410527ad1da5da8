"""Parley's one settings module.

Everything that differs between a laptop and production is read from the environment here, and
nothing else differs. The defaults fail closed: with no variables set DEBUG is off and the site
refuses to start without a SECRET_KEY. `make run` and `make test` set DEBUG=1 for local use.
Every variable is documented in README.md.
"""

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


# --- Core -----------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Parley refuses to start with DEBUG off and no SECRET_KEY. "
            "In production set SECRET_KEY to a long random string, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`. "
            "For local development set DEBUG=1 (as `make run` does)."
        )
    SECRET_KEY = "parley-insecure-local-development-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# Origins (scheme://host[:port]) that may send unsafe requests, e.g. https://chat.example.org.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # daphne first: its runserver replaces Django's, so `manage.py runserver` speaks WebSockets.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "allauth",
    "allauth.account",
    "accounts",
    "rooms",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a signed-in member unless its view says @login_not_required
    # (allauth's sign-up, log-in and password-reset views do).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "parley.middleware.htmx_login_redirect",
    # After authentication and htmx: limits are per member, and htmx gets a notice.
    "parley.ratelimits.WriteRateLimits",
]

ROOT_URLCONF = "parley.urls"
ASGI_APPLICATION = "parley.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rooms.context_processors.sidebar",
                "accounts.context_processors.contacts",
                "calls.context_processors.call_slot",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL picks the engine: an SQLite file by default, PostgreSQL in production
# (postgres://user:password@host:5432/name).

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and the writer work at once; IMMEDIATE takes the write lock when a
    # transaction starts, so concurrent writers wait for it instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request may run in a different thread, so persistent connections do not
    # help; a pool does. https://docs.djangoproject.com/en/6.1/ref/databases/#connection-pool
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Django's backend, made to fail fast while the server is away (parley/postgresql/base.py):
    # once a connection could not be had, the others fail at once for a while instead of each
    # waiting the pool's `timeout`, one after another, on a process's one database thread.
    DATABASES["default"]["ENGINE"] = "parley.postgresql"
    # After PostgreSQL restarts, every connection resting in the pool is dead: the check (an
    # empty query when the pool hands one out) drops them all at the first. While the server is
    # down a connection is waited for `timeout` seconds at most, then the work fails (a room
    # socket says "not sent"), instead of holding the database thread for 30 s.
    from parley.postgresql.base import check_connection

    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "check": check_connection,
        "timeout": 5,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache ---------------------------------------------------------
# Without REDIS_URL everything stays in this one process. With it, several daphne processes
# share one channel layer, and allauth's rate limits share one cache.

REDIS_URL = os.environ.get("REDIS_URL", "")
# Starts every name Parley uses on that Redis server: channel-layer groups and channels, the
# presence store's keys, the cache's keys. Pub/sub ignores database numbers, so deployments (or
# test runs) sharing one server need prefixes of their own or they hear each other.
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "parley").strip()
if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", REDIS_PREFIX):
    raise ImproperlyConfigured(
        f"REDIS_PREFIX must be 1 to 40 letters, digits, '.', '_' or '-', not {REDIS_PREFIX!r}."
    )
if REDIS_URL:
    # The pub/sub layer by default; REDIS_CHANNEL_LAYER=core picks the core layer
    # (docs/performance.md compares them).
    REDIS_CHANNEL_LAYER = os.environ.get("REDIS_CHANNEL_LAYER", "pubsub")
    if REDIS_CHANNEL_LAYER == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX},
            }
        }
    elif REDIS_CHANNEL_LAYER == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    # The core layer blocks 5 s in BZPOPMIN, as long as redis-py's default read
                    # timeout: a quiet room's read timed out and its listener ended.
                    "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                    # One channel per room per process carries every message of the room; the
                    # default of 100 dropped messages in a burst.
                    "capacity": 10_000,
                    "prefix": REDIS_PREFIX,
                },
            }
        }
    else:
        raise ImproperlyConfigured("REDIS_CHANNEL_LAYER must be pubsub or core.")
    CACHES = {
        "default": {
            # Django's Redis cache, answering empty while Redis is away (parley/cache.py).
            "BACKEND": "parley.cache.FailOpenRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            # An unreachable Redis costs a request at most this long, not the OS's TCP timeout.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Presence across processes (parley/live/presence.py): each process refreshes its members'
# entries every PRESENCE_REFRESH seconds and they expire PRESENCE_TTL seconds after the last
# refresh; every PRESENCE_SWEEP seconds a process removes expired entries. A killed process's
# members therefore show offline within PRESENCE_TTL + PRESENCE_SWEEP seconds (50 by default).
PRESENCE_TTL = env_float("PRESENCE_TTL", 45)
PRESENCE_REFRESH = env_float("PRESENCE_REFRESH", 15)
PRESENCE_SWEEP = env_float("PRESENCE_SWEEP", 5)

# --- Limits that protect the server ---------------------------------------------------------

# Open sockets (every page keeps one, a room page two, a call page two or three), counted on the
# whole site (parley/live/caps.py); 0 turns a cap off. 60 per member is some 25 tabs of rooms,
# with room for the sockets of tabs that vanished and are not yet timed out (about 50 s). 200
# per address lets an office or a school behind one NAT address, some 60 people, chat at once;
# IPv6 addresses count by their /64. Raise it when many more share one address.
SOCKETS_PER_MEMBER = env_int("SOCKETS_PER_MEMBER", 60)
SOCKETS_PER_ADDRESS = env_int("SOCKETS_PER_ADDRESS", 200)
# Bytes a socket may have waiting to be sent, beyond what the kernel holds, before its next frame
# closes it instead (parley/live/transport.py): a tab that stopped reading costs the server at
# most this plus one frame (daphne sends none over 1 MiB). Its page reconnects when it wakes and
# catches up. 1 MiB is about a thousand live messages not read, or a whole catch-up frame still
# waiting behind another on a slow link (a page that falls further behind reconnects and carries
# on from what it has). 0: no bound.
SOCKET_UNSENT_LIMIT = env_int("SOCKET_UNSENT_LIMIT", 1024 * 1024)
# Request-rate limits on the forms that write (parley/ratelimits.py); allauth's on log-in and
# sign-up are always on.
WRITE_RATE_LIMITS = env_bool("WRITE_RATE_LIMITS", True)

# --- Calls ---------------------------------------------------------------------------------

# How long a call rings before it is missed; how long an answered call may take to connect its
# media before it failed; how long an active call outlives a participant whose call page is gone
# (a reload or a network change comes back well within it). Every call socket tells the server
# it is there every CALL_KEEPALIVE seconds, and every process with open sockets ends overdue
# calls every CALL_SWEEP seconds (they are also ended whenever one is read), so no call rings or
# lasts forever, even when the process that was timing it dies.
CALL_RING_TIMEOUT = env_float("CALL_RING_TIMEOUT", 30)
CALL_CONNECT_TIMEOUT = env_float("CALL_CONNECT_TIMEOUT", 30)
CALL_SEAT_TIMEOUT = env_float("CALL_SEAT_TIMEOUT", 30)
CALL_KEEPALIVE = env_float("CALL_KEEPALIVE", 10)
CALL_SWEEP = env_float("CALL_SWEEP", 2)

# ICE servers for calls (calls/ice.py). With none set, calls use host candidates: fine on one
# network. For calls across networks run a TURN server (site/turnserver.conf) and set
# TURN_URLS (comma-separated turn:/turns: URLs) and TURN_SECRET (coturn's static-auth-secret):
# each call page gets credentials minted for that member and call, valid TURN_CREDENTIAL_TTL
# seconds. CALL_FORCE_RELAY sends all media through TURN (hides members' addresses).
TURN_URLS = env_list("TURN_URLS")
TURN_SECRET = os.environ.get("TURN_SECRET", "")
TURN_CREDENTIAL_TTL = env_int("TURN_CREDENTIAL_TTL", 12 * 60 * 60)
STUN_URLS = env_list("STUN_URLS")
CALL_FORCE_RELAY = env_bool("CALL_FORCE_RELAY", False)

# --- Accounts (django-allauth) --------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_FORMS = {"login": "accounts.forms.LoginForm"}
# "none" locally, "mandatory" in production: a member must confirm their address first.
ACCOUNT_EMAIL_VERIFICATION = os.environ.get(
    "ACCOUNT_EMAIL_VERIFICATION", "none" if DEBUG else "mandatory"
)
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None  # ask with the "Remember me" box
# allauth's rate limits are on by default (ACCOUNT_RATE_LIMITS); they count in the cache above.

# --- Email ----------------------------------------------------------------------------------
# Printed to the console unless EMAIL_HOST names an SMTP server. (Django 6.1 configures mail
# through MAILERS; the EMAIL_* variable names are kept because operators know them.)

email_host = os.environ.get("EMAIL_HOST", "")
if email_host:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": email_host,
                "port": env_int("EMAIL_PORT", 587),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
                "use_tls": env_bool("EMAIL_USE_TLS", True),
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Parley <parley@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Static files ---------------------------------------------------------------------------
# WhiteNoise serves them from daphne itself, so one process is a whole site; in production
# `collectstatic` gives every file a hashed name that browsers may cache forever, and Caddy
# serves STATIC_ROOT itself (site/Caddyfile), WhiteNoise's precompressed copies included.

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security -------------------------------------------------------------------------------

# No inline scripts, no eval, nothing from another origin: htmx, its ws extension and the
# WebRTC module are files served by this site. Browsers report what it refuses to
# /csp-report/ (parley/csp.py logs each), with the start of a refused script or style.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.REPORT_SAMPLE],
    "style-src": [CSP.SELF, CSP.REPORT_SAMPLE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "media-src": [CSP.SELF, "blob:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "report-uri": ["/csp-report/"],
}
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

if not DEBUG:
    # Parley runs behind a TLS-terminating proxy (site/) that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# --- Internationalization -------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Logging --------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django gives its own loggers a console handler of their own; one line per event is enough.
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
