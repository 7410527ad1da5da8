"""Run Parley's whole suite, the way `make test` and CI do.

1. ruff: lint and format.
2. Unit and integration tests on the embedded engines: SQLite and the in-memory channel layer.
3. The same tests on PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL).
4. Browser tests: a live daphne server and the system Chromium, inside a private network
   namespace that has only loopback when this run may make one.

A configuration that cannot run here is skipped with the reason said plainly, and listed again
at the end. With CI set, nothing may be skipped: a skip fails the run.
Extra arguments are passed to every pytest run (e.g. `-k profile`, `-x`).
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CI = bool(os.environ.get("CI"))

# Database `test` on the local server; pytest-django creates and drops `test_test` beside it.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"
# Database 15 of the local Redis, so the tests' cache flushes leave other databases alone.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
# The variables that pick engines; every configuration starts from none of them.
ENGINE_VARIABLES = ("DATABASE_URL", "REDIS_URL")


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_VARIABLES}
    env.setdefault("DEBUG", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(command: list[str], env: dict[str, str]) -> bool:
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode == 0


def find_chromium() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM_PATH"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def private_network_prefix() -> list[str]:
    """`unshare -n` with loopback up, when this run is allowed to make a network namespace."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return []
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return []
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def main(extra: list[str]) -> int:
    # --durations: each run ends with its slowest tests, to show where make test's time goes.
    pytest = [str(VENV_BIN / "python"), "-m", "pytest", "--durations=15", *extra]
    results: list[tuple[str, str]] = []

    def record(name: str, ok: bool) -> None:
        results.append((name, "passed" if ok else "FAILED"))

    def skip(name: str, why: str) -> None:
        results.append((name, f"SKIPPED: {why}"))
        print(f"SKIPPED {name}: {why}", flush=True)

    say("ruff: lint and format")
    env = base_env()
    ok = run([str(VENV_BIN / "ruff"), "check", "."], env)
    ok = run([str(VENV_BIN / "ruff"), "format", "--check", "."], env) and ok
    record("ruff check and format", ok)

    say("Unit and integration tests: SQLite + in-memory channel layer")
    # Tests marked `redis` (several server processes sharing Redis) run in the next configuration.
    record(
        "unit/integration on SQLite + in-memory layer",
        run([*pytest, "-m", "not e2e and not redis"], env),
    )

    name = "unit/integration on PostgreSQL + Redis"
    say(f"{name}")
    database_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    missing = [
        f"nothing answers at {url}"
        for url, port in ((database_url, 5432), (redis_url, 6379))
        if not reachable(url, port)
    ]
    if missing:
        skip(name, "; ".join(missing) + " (set TEST_DATABASE_URL / TEST_REDIS_URL)")
    else:
        env = base_env() | {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        record(name, run([*pytest, "-m", "not e2e"], env))

    name = "browser tests (live daphne + Chromium)"
    say(name)
    chromium = find_chromium()
    if chromium is None:
        skip(name, "no Chromium found (install Debian's `chromium`, or set CHROMIUM_PATH)")
    else:
        env = base_env() | {"CHROMIUM_PATH": chromium}
        prefix = private_network_prefix()
        if prefix:
            print("Running inside a private network namespace with only loopback.", flush=True)
        else:
            print("No private network namespace here (needs root and unshare): running as is.")
        command = [*pytest, "-m", "e2e", "--screenshot=only-on-failure", "--output=test-results"]
        record(name, run([*prefix, *command], env))

    say("Summary")
    for name, outcome in results:
        print(
            f"  {outcome:<10} {name}"
            if not outcome.startswith("SKIPPED")
            else f"  {name}: {outcome}"
        )
    failed = [name for name, outcome in results if outcome == "FAILED"]
    skipped = [name for name, outcome in results if outcome.startswith("SKIPPED")]
    if CI and skipped:
        print("CI is set, so no configuration may be skipped: failing.")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
