"""A real daphne process serving Parley, for tests that need the server as users get it."""

import os
import re
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """The URL of the database this test run uses, for a server process to open too."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class LiveServer:
    """daphne serving parley.asgi on 127.0.0.1, on `port` or one the system picks."""

    def __init__(
        self,
        env: dict[str, str],
        port: int = 0,
        daphne_args: tuple[str, ...] = (),
        module: str = "daphne",
    ):
        self.output: deque[str] = deque(maxlen=400)
        # The test process's own switches stay out of the server.
        env = {k: v for k, v in env.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,  # daphne, or a module that runs it
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                *daphne_args,
                "parley.asgi:application",
            ],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = self._wait_for_address()
        self.port = int(self.url.rsplit(":", 1)[1])
        threading.Thread(target=self._drain, daemon=True).start()

    @classmethod
    def for_tests(
        cls, port: int = 0, daphne_args: tuple[str, ...] = (), module: str = "daphne", **env: str
    ):
        """A server on this test run's database, with DEBUG on and `env` on top."""
        base = {**os.environ, "DEBUG": "1", "DATABASE_URL": test_database_url()}
        return cls({**base, **env}, port=port, daphne_args=daphne_args, module=module)

    def _wait_for_address(self) -> str:
        for line in self.process.stdout:
            self.output.append(line)
            found = re.search(r"Listening on TCP address (127\.0\.0\.1:\d+)", line)
            if found:
                return f"http://{found.group(1)}"
        raise RuntimeError("daphne exited before listening:\n" + self.tail())

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def tail(self, lines: int = 60) -> str:
        return "".join(list(self.output)[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
