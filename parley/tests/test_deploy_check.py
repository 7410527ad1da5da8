"""Django's deployment checklist (`manage.py check --deploy`) passes with the kit's example
environment, its secrets made as the file says (`openssl rand -hex 32`)."""

import secrets
import subprocess
import sys
from pathlib import Path

from e2e.deployment import read_environment_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "site" / "parley.env.example"


def example_environment() -> dict[str, str]:
    values = read_environment_file(EXAMPLE)
    filled = {key: v.replace("CHANGE-ME", secrets.token_hex(32)) for key, v in values.items()}
    # Nothing but the file and what systemd gives every service.
    return filled | {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def test_the_example_environment_names_every_secret_as_a_placeholder():
    values = read_environment_file(EXAMPLE)
    for key in ("SECRET_KEY", "TURN_SECRET", "EMAIL_HOST_PASSWORD"):
        assert values[key] == "CHANGE-ME"
    assert "CHANGE-ME" in values["DATABASE_URL"]
    assert values["DEBUG"] == "0"


def test_check_deploy_is_clean_with_the_example_environment():
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=example_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout, done.stdout
    assert done.stderr == ""


def test_a_shell_reads_the_example_environment_as_systemd_does():
    """Operators source the file in a shell too (`set -a; . parley.env`): same values."""
    done = subprocess.run(
        ["/bin/sh", "-c", 'set -a; . "$0"; env -0', str(EXAMPLE)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    shell = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    for key, value in read_environment_file(EXAMPLE).items():
        assert shell[key] == value, key


def test_the_proxys_health_check_answers_anyone_without_touching_the_database(client):
    # No database access is allowed in this test: a query would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
