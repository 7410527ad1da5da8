"""Counting what a member does within a window of time, across every server process."""

from django.core.cache import cache


def count_within(key: str, window_seconds: int) -> int:
    """Count one more under `key` and return the count in the window it started.

    The window opens with the first count and closes `window_seconds` later; the cache holds it,
    so with REDIS_URL set every process counts in the same one.
    """
    cache.add(key, 0, timeout=window_seconds)
    try:
        return cache.incr(key)
    except ValueError:  # the window closed between add and incr
        cache.add(key, 1, timeout=window_seconds)
        return 1
