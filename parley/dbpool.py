"""The PostgreSQL connection pool's health check, for a server that restarted.

After PostgreSQL restarts, every connection resting in the pool is dead. psycopg_pool's own
check (`ConnectionPool.check_connection`) finds them one by one as it hands them out and, to
avoid a busy loop, sleeps 1 s, 2 s, 4 s... between them: with four dead connections a request
waits 7 s, longer than its timeout, although the server is back. This check drops every dead
connection at the first one it finds (`pool.check()`, which also starts their replacements), so
the request waits one pause and then gets a fresh connection.
"""

from psycopg_pool import ConnectionPool


def check_connection(conn) -> None:
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # set by the pool before it checks a connection
        if pool is not None:
            pool.check()
        raise
