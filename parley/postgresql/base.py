"""Django's PostgreSQL backend with its connection pool, made to fail fast while the server is away.

Every socket of a daphne process reads and writes through one database thread (channels'
`database_sync_to_async`), so while PostgreSQL is away each read or write holds that thread for
the pool's whole `timeout` before it fails. They queue: a send behind a call sweep and four
reconnecting sockets is told "Not sent" after half a minute, not seconds. So once a connection
cannot be had, this process stops asking (`Outage`): for a PAUSE every connection fails at once,
then one is let through to see whether the server is back, the others still failing at once
until it knows. What has a connection keeps it.

After PostgreSQL restarts, every connection resting in the pool is dead. psycopg_pool's own
check (`ConnectionPool.check_connection`) finds them one by one as it hands them out and, to
avoid a busy loop, sleeps 1 s, 2 s, 4 s... between them: with four dead connections a request
waits 7 s, longer than its timeout, although the server is back. `check_connection` drops every
dead connection at the first one it finds (`pool.check()`, which also starts their
replacements), so the request waits one pause and then gets a fresh connection.
"""

import threading
import time

from django.db.backends.postgresql import base
from psycopg import OperationalError
from psycopg_pool import ConnectionPool

# Seconds between two tries of a server that did not answer.
PAUSE = 1.0


class Outage:
    """Whether this process could not get a connection lately, for every thread of it."""

    def __init__(self, pause: float = PAUSE) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.since: float | None = None  # when connecting first failed; None: not away
        self.error = ""  # why the last try failed
        self.trying = False  # one connection is being tried
        self.next_try = 0.0

    def admit(self) -> None:
        """Return if a connection may be tried now; raise OperationalError at once if not."""
        with self.lock:
            if self.since is None:
                return
            now = time.monotonic()
            if not self.trying and now >= self.next_try:
                self.trying = True
                return
            away, error = now - self.since, self.error
        raise OperationalError(
            f"PostgreSQL has not answered for {away:.1f} s (last: {error}); "
            "not waiting for it again so soon"
        )

    def failed(self, error: Exception) -> None:
        with self.lock:
            now = time.monotonic()
            if self.since is None:
                self.since = now
            self.error = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            self.trying = False
            self.next_try = now + self.pause

    def answered(self) -> None:
        with self.lock:
            self.since = None
            self.trying = False

    def untried(self) -> None:
        """The try ended without a word from the server (it was interrupted)."""
        with self.lock:
            self.trying = False


outage = Outage()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        outage.admit()
        try:
            connection = super().get_new_connection(conn_params)
        except OperationalError as error:  # no server, or none within the pool's timeout
            outage.failed(error)
            raise
        except BaseException:
            outage.untried()
            raise
        outage.answered()
        return connection


def check_connection(conn) -> None:
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # set by the pool before it checks a connection
        if pool is not None:
            pool.check()
        raise
