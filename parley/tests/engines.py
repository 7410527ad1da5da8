"""Private Redis and PostgreSQL servers, as child processes of the tests.

Tests that run inside a private network namespace cannot reach the machine's own servers, and
tests that restart or kill a server (the fault tests) must never touch a server anyone else uses.
Each server here listens on 127.0.0.1 on a port of its own, keeps its files under a directory the
test gives it, and is stopped by the pid of the process this module started, nothing broader.

    with PrivateRedis() as redis, PrivatePostgres(tmp_path / "pg") as postgres:
        env = {"REDIS_URL": redis.url, "DATABASE_URL": postgres.url}
        ...
        redis.restart()      # same port, empty memory: what a Redis restart is
        postgres.restart()   # same port and data: every connection is cut
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(ready, what: str, timeout: float = 15.0, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(0.05)


class PrivateRedis:
    """redis-server on 127.0.0.1:`port`, keeping nothing on disk (like the machine's)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for(self.ping, "redis-server", process=self.process)

    def stop(self, signal_kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill() if signal_kill else self.process.terminate()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or Debian's newest under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found (Debian: apt-get install postgresql)"
        )
    return candidates[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of its own under `directory`, on 127.0.0.1:`port`, trust auth.

    PostgreSQL refuses to run as root; run as root, the cluster belongs to the `postgres` system
    user (Debian's package makes it). Durability is traded for speed (fsync off): the tests
    restart the server cleanly or kill it, they never pull the machine's power."""

    def __init__(self, directory: Path | None = None, port: int | None = None, database="parley"):
        # Run as root, the `postgres` user must reach the directory: pytest's tmp_path lies under
        # a directory only root may enter, so by default the cluster gets one of its own in /tmp.
        self.directory = Path(directory or tempfile.mkdtemp(prefix="parley-pg-"))
        self._own_directory = directory is None
        self.data = self.directory / "data"
        self.sockets = self.directory / "sockets"
        self.port = port or free_port()
        self.database = database
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"
        self._user = "postgres" if os.geteuid() == 0 else None

    def __enter__(self):
        self.start()
        return self

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        return subprocess.run(
            [*prefix, *command], capture_output=True, text=True, check=True, cwd="/"
        )

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.sockets} -h 127.0.0.1 -c fsync=off"
        options += " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        log = str(self.directory / "postgres.log")
        self._run(postgres_bin("pg_ctl"), action, "-D", str(self.data), "-l", log, "-w",
                  "-o", options, *extra)  # fmt: skip

    def ready(self) -> bool:
        probe = subprocess.run(
            [postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return probe.returncode == 0

    def start(self) -> None:
        if not self.data.exists():
            self.sockets.mkdir(parents=True, exist_ok=True)
            self.data.mkdir(parents=True)
            if self._user:
                owner = pwd.getpwnam(self._user)
                for path in (self.directory, self.data, self.sockets):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._run(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--no-sync")  # fmt: skip
            self._pg_ctl("start")
            self._run(postgres_bin("createdb"),
                      "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      self.database)  # fmt: skip
        else:
            self._pg_ctl("start")
        wait_for(self.ready, "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and shuts down cleanly; `immediate` is a crash."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", mode)

    def __exit__(self, *exc):
        self.stop()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()
