"""The cache, which keeps going while Redis is away.

Parley's cache holds only counts for limits (allauth's log-in and sign-up limits, the message
flood limit, the write-rate limits): nothing a member would lose. So while Redis is restarting or
unreachable, Django's Redis cache here answers as an empty cache that forgets what it is told,
instead of raising into every request that counts (a log-in would be a 500). Limits are off for
that while — fail open — and come back with Redis. A warning is logged, at most every 10 s.
"""

import logging
import time
from functools import wraps

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)

UNREACHABLE = (ConnectionError, TimeoutError)
WARN_EVERY = 10.0


def _fail_open(answer):
    """Wrap a cache method: while Redis is unreachable, `answer(*args, **kwargs)` instead."""

    def decorate(method):
        @wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except UNREACHABLE as error:
                self._warn(error)
                return answer(*args, **kwargs)

        return wrapper

    return decorate


def _default(key, default=None, version=None):
    return default


class FailOpenRedisCache(RedisCache):
    _warned_at = 0.0

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            logger.warning("Redis unreachable, the cache answers empty meanwhile: %s", error)

    get = _fail_open(_default)(RedisCache.get)
    get_many = _fail_open(lambda keys, version=None: {})(RedisCache.get_many)
    has_key = _fail_open(lambda key, version=None: False)(RedisCache.has_key)
    add = _fail_open(lambda *args, **kwargs: True)(RedisCache.add)
    set = _fail_open(lambda *args, **kwargs: None)(RedisCache.set)
    set_many = _fail_open(lambda *args, **kwargs: [])(RedisCache.set_many)
    touch = _fail_open(lambda *args, **kwargs: False)(RedisCache.touch)
    delete = _fail_open(lambda *args, **kwargs: False)(RedisCache.delete)
    delete_many = _fail_open(lambda *args, **kwargs: None)(RedisCache.delete_many)
    clear = _fail_open(lambda *args, **kwargs: False)(RedisCache.clear)
    # A count that cannot be kept is the first of its window.
    incr = _fail_open(lambda key, delta=1, version=None: delta)(RedisCache.incr)
