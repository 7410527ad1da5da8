"""Parley in its production shape, built from the kit in site/, for tests to drive and break.

    with Deployment(tmp_path) as site:
        members = site.make_members("ada", "bob")
        context = site.signed_in_context(browser, members[0])
        context.new_page().goto(site.url + "/rooms/")
        site.daphnes[0].kill()            # SIGKILL: pages reconnect through Caddy to the other
        site.daphnes[0].start()           # back, as systemd's Restart=always brings it
        site.redis.restart(); site.postgres.restart()
        site.mail.wait_for("cleo@example.org")

What runs, each as a child process of the test, on 127.0.0.1 only:
- PostgreSQL and Redis of the deployment's own (parley/tests/engines.py);
- coturn (e2e/turn.py) with site/turnserver.conf, loopback allowed instead of the world;
- an SMTP sink (aiosmtpd) that keeps every message Parley sends;
- the one-off units parley-migrate.service and parley-collectstatic.service, then two instances
  of parley@.service: each ExecStart, WorkingDirectory and EnvironmentFile read from the unit
  files, with `%i` the instance's port, and an environment as clean as systemd's;
- Caddy with site/Caddyfile, in which only what differs on a test machine is replaced
  (`caddyfile()` says what), serving https://parley.test:<port> with a certificate made here.

The environment file is site/parley.env.example with its values replaced; a variable the test
sets that the example lacks is an error, so the example keeps naming everything a site needs.
If the kit's files change shape so that a replacement no longer applies, starting fails.
"""

import base64
import hashlib
import http.client
import json
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from e2e.turn import Coturn
from parley.tests.engines import PrivatePostgres, PrivateRedis, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
HOST = "parley.test"
# Where the kit's files say Parley is installed; here it is this checkout and its virtualenv.
INSTALL = "/srv/parley/app"
# What systemd gives a service before its EnvironmentFile: nothing from the shell that started it.
SYSTEMD_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def caddy_path() -> str | None:
    return shutil.which("caddy")


# --- The kit's files, read as systemd and Caddy read them -------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, str]]:
    """A systemd unit's sections and settings (each key once: the kit's units repeat none)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals, f"{path.name}: cannot read {raw!r}"
        assert current is not None, f"{path.name}: {raw!r} outside a section"
        assert key.strip() not in current, f"{path.name}: {key.strip()} twice"
        current[key.strip()] = value.strip()
    return sections


def read_environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (comments, optional quotes)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        assert equals, f"cannot read {raw!r}"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"not a variable name: {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def environment_file(values: dict[str, str], path: Path) -> Path:
    """site/parley.env.example with `values` in place of its own; every key must be in it."""
    example = (SITE / "parley.env.example").read_text()
    known = read_environment_file(SITE / "parley.env.example")
    unknown = sorted(set(values) - set(known))
    assert not unknown, f"site/parley.env.example does not mention {unknown}"
    lines = []
    for line in example.splitlines():
        key = line.partition("=")[0].strip()
        if not line.lstrip().startswith("#") and key in values:
            line = f"{key}={values[key]}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Command:
    """How systemd would run a unit's ExecStart: argv, working directory, environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]


def unit_command(unit: str, env_file: Path, instance: str = "") -> Command:
    service = read_unit(SITE / unit)["Service"]
    assert service["EnvironmentFile"] == "/etc/parley/parley.env", service["EnvironmentFile"]
    assert service["WorkingDirectory"] == INSTALL, service["WorkingDirectory"]
    venv = str(Path(sys.executable).parent.parent)
    argv = [
        part.replace("%i", instance).replace(f"{INSTALL}/.venv", venv)
        for part in shlex.split(service["ExecStart"])
    ]
    assert Path(argv[0]).exists(), f"{unit}: {argv[0]} does not exist"
    assert "%" not in " ".join(argv), f"{unit}: a specifier the harness does not know: {argv}"
    env = SYSTEMD_ENV | read_environment_file(env_file)
    return Command(argv=argv, cwd=ROOT, env=env)


def run_oneshot(unit: str, env_file: Path) -> str:
    command = unit_command(unit, env_file)
    done = subprocess.run(
        command.argv, cwd=command.cwd, env=command.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{unit} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done.stdout


def upstream_ports(caddyfile: str) -> list[int]:
    """The daphne ports on the Caddyfile's reverse_proxy line."""
    found = re.findall(r"^\s*reverse_proxy ((?:127\.0\.0\.1:\d+ ?)+)\{", caddyfile, re.M)
    assert len(found) == 1, "site/Caddyfile: expected one reverse_proxy line to 127.0.0.1 ports"
    return [int(address.rsplit(":", 1)[1]) for address in found[0].split()]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"site/Caddyfile: expected {old!r} once, found {text.count(old)}"
    return text.replace(old, new)


# --- The pieces -------------------------------------------------------------------------------


class Certificate:
    """A self-signed certificate for HOST, made with openssl, and the pin Chromium trusts."""

    def __init__(self, directory: Path):
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext",
             f"subjectAltName=DNS:{HOST}", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-noout", "-pubkey"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        public = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=der, check=True, capture_output=True,
        ).stdout  # fmt: skip
        # Chromium's --ignore-certificate-errors-spki-list: base64 SHA-256 of the public key.
        self.spki = base64.b64encode(hashlib.sha256(public).digest()).decode()


class MailSink:
    """An SMTP server on 127.0.0.1 that keeps every message it is given (aiosmtpd)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, to: str, timeout: float = 20) -> EmailMessage:
        """The first message to `to`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for message in self.messages:
                    if to in str(message["To"]):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"no mail to {to} within {timeout} s: {len(self.messages)} others"
                self._arrived.wait(left)

    @staticmethod
    def links(message: EmailMessage) -> list[str]:
        body = message.get_body(preferencelist=("plain", "html")).get_content()
        return re.findall(r"https?://[^\s\"'<>]+", body)


class Process:
    """A child process whose output is kept (the last lines, for failures)."""

    def __init__(self, name: str):
        self.name = name
        self.output: deque[str] = deque(maxlen=600)
        self.process: subprocess.Popen | None = None

    def _spawn(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        assert not self.running, f"{self.name} is already running"
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.output.append(line)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer does: nothing is closed cleanly."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop` does, then SIGKILL after a while."""
        if not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 80) -> str:
        return "".join(list(self.output)[-lines:])

    def _wait_listening(self, port: int, timeout: float) -> None:
        try:
            wait_for(lambda: listening(port), self.name, timeout=timeout, process=self.process)
        except RuntimeError as error:
            time.sleep(0.2)  # the last lines of a process that just exited
            raise RuntimeError(f"{error}:\n{self.tail()}") from None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Daphne(Process):
    """One instance of site/parley@.service: `parley@<port>`."""

    def __init__(self, port: int, env_file: Path):
        super().__init__(f"parley@{port}")
        self.port, self.env_file = port, env_file

    def command(self) -> Command:
        return unit_command("parley@.service", self.env_file, instance=str(self.port))

    def start(self, timeout: float = 30) -> None:
        """As systemd starts (or restarts) the unit; returns once the port accepts."""
        self.spawn()
        self.wait_listening(timeout)

    def spawn(self) -> None:
        command = self.command()
        self._spawn(command.argv, command.cwd, command.env | {"PYTHONUNBUFFERED": "1"})

    def wait_listening(self, timeout: float = 30) -> None:
        self._wait_listening(self.port, timeout)


class Caddy(Process):
    def __init__(self, config: Path, port: int, home: Path):
        super().__init__("caddy")
        self.config, self.port, self.home = config, port, home

    def start(self, timeout: float = 20) -> None:
        argv = [caddy_path() or "caddy", "run", "--config", str(self.config)]
        argv += ["--adapter", "caddyfile"]
        # Caddy keeps its data and config under these; the machine's stay untouched.
        env = SYSTEMD_ENV | {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
        }
        self._spawn(argv, self.home, env)
        self._wait_listening(self.port, timeout)


@dataclass
class Member:
    username: str
    email: str
    password: str
    pk: int
    session: str  # a signed-in session's cookie value


# What make_members runs inside the deployment (as `manage.py shell` would): members with a
# confirmed address, each signed in once.
MAKE_MEMBERS = """
import json, sys
from allauth.account.models import EmailAddress
from django.test import Client
from accounts.models import User
out = []
for spec in json.loads(sys.argv[1]):
    user = User.objects.create_user(spec["username"], spec["email"], spec["password"],
                                    display_name=spec["display_name"])
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    client = Client()
    client.force_login(user)
    out.append(spec | {"pk": user.pk, "session": client.cookies["sessionid"].value})
print("MEMBERS=" + json.dumps(out))
"""


class Deployment:
    """The whole production shape; see the module's docstring. `daphnes` is one per upstream
    port of site/Caddyfile (two as shipped)."""

    def __init__(self, directory: Path | None = None, **env: str):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="parley-site-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.extra_env = env
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        self.secrets = {"SECRET_KEY": secrets.token_hex(32), "TURN_SECRET": secrets.token_hex(32)}
        self.redis: PrivateRedis | None = None
        self.postgres: PrivatePostgres | None = None
        self.turn: Coturn | None = None
        self.mail: MailSink | None = None
        self.daphnes: list[Daphne] = []
        self.caddy: Caddy | None = None
        self._started: list = []

    # --- starting and stopping ---

    def __enter__(self) -> "Deployment":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.certificate = Certificate(self.directory)
        self.redis = self._keep(PrivateRedis())
        self.redis.start()
        # PostgreSQL's files go where its system user may reach them (engines.py says why).
        self.postgres = self._keep(PrivatePostgres())
        self.postgres.start()
        self.turn = self._keep(Coturn(self.directory / "coturn", config=self._turn_config()))
        self.turn.start()
        self.mail = self._keep(MailSink())
        self.mail.start()
        self.env_file = environment_file(self.environment(), self.directory / "parley.env")
        self.migrate_output = run_oneshot("parley-migrate.service", self.env_file)
        self.collectstatic_output = run_oneshot("parley-collectstatic.service", self.env_file)
        shipped = (SITE / "Caddyfile").read_text()
        for port in upstream_ports(shipped):
            daphne = self._keep(Daphne(free_port(), self.env_file))
            daphne.shipped_port = port
            self.daphnes.append(daphne)
        for daphne in self.daphnes:
            daphne.spawn()
        for daphne in self.daphnes:
            daphne.wait_listening()
        config = self.directory / "Caddyfile"
        config.write_text(self.caddyfile(shipped))
        self.caddy = self._keep(Caddy(config, self.port, self.directory / "caddy"))
        self.caddy.home.mkdir(exist_ok=True)
        self.caddy.start()
        wait_for(self.healthy, "the site through Caddy", timeout=20)

    def _keep(self, piece):
        self._started.append(piece)
        return piece

    def stop(self) -> None:
        for piece in reversed(self._started):
            try:
                piece.stop()
            except Exception as error:
                print(f"stopping {piece!r}: {error}")
        self._started.clear()

    # --- what the kit's files become here ---

    def environment(self) -> dict[str, str]:
        """The values this deployment puts into site/parley.env.example."""
        return {
            "DEBUG": "0",
            "SECRET_KEY": self.secrets["SECRET_KEY"],
            "ALLOWED_HOSTS": HOST,
            "CSRF_TRUSTED_ORIGINS": self.url,
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "REDIS_PREFIX": "parley",
            "STATIC_ROOT": str(self.directory / "staticfiles"),
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.mail.port),
            # The sink speaks plain SMTP without log-in, as a relay on the same machine does.
            "EMAIL_USE_TLS": "0",
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "DEFAULT_FROM_EMAIL": f"Parley <parley@{HOST}>",
            "TURN_URLS": ",".join(self.turn.urls),
            "STUN_URLS": "",
            "TURN_SECRET": self.secrets["TURN_SECRET"],
            # Calls between members on other networks: here, proven by allowing nothing else.
            "CALL_FORCE_RELAY": "1",
            **self.extra_env,
        }

    def _turn_config(self) -> Path:
        """site/turnserver.conf with the deployment's secret and realm, logging to stdout (the
        harness's Coturn adds loopback listening and relaying on top)."""
        shipped = (SITE / "turnserver.conf").read_text()
        shipped = replace_once(shipped, "static-auth-secret=CHANGE-ME\n",
                               f"static-auth-secret={self.secrets['TURN_SECRET']}\n")  # fmt: skip
        shipped = replace_once(shipped, "\nsyslog\n", "\n")
        path = self.directory / "turnserver.conf"
        path.write_text(shipped)
        return path

    def caddyfile(self, shipped: str) -> str:
        """site/Caddyfile with what differs on a test machine replaced, each exactly once:
        - the global options: no admin endpoint, Caddy's storage in the test's directory, no
          listener on port 80 (redirects), no attempt to install a CA in the system's trust;
        - the site's name (also in the health check's Host) and a port of the test's own;
        - `tls` with this deployment's certificate instead of one from Let's Encrypt, and
          `bind 127.0.0.1`;
        - the static root and the daphne ports.
        """
        text = replace_once(
            shipped,
            "{\n\t# Let's Encrypt writes here when a certificate cannot be renewed.\n"
            "\temail admin@example.org\n}\n",
            "{\n\tadmin off\n\tauto_https disable_redirects\n"
            f"\tskip_install_trust\n\tstorage file_system {self.directory / 'caddy' / 'data'}\n"
            "}\n",
        )
        text = replace_once(
            text,
            "\nchat.example.org {\n",
            f"\n{HOST}:{self.port} {{\n\ttls {self.certificate.cert} {self.certificate.key}\n"
            "\tbind 127.0.0.1\n",
        )
        text = replace_once(text, "Host chat.example.org\n", f"Host {HOST}\n")
        text = replace_once(
            text, "root * /srv/parley/staticfiles\n", f"root * {self.directory / 'staticfiles'}\n"
        )
        for daphne in self.daphnes:
            text = replace_once(text, f"127.0.0.1:{daphne.shipped_port} ",
                                f"127.0.0.1:{daphne.port} ")  # fmt: skip
        return text

    # --- using it ---

    def healthy(self) -> bool:
        """Whether a page comes through Caddy (the log-in page, to an anonymous visitor)."""
        return self.get("/accounts/login/")[0] == 200

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        """A GET through Caddy over TLS, trusting exactly this deployment's certificate.
        (0, {}, b"") when nothing answers."""
        connection = _PinnedHTTPS(HOST, self.port, context=self._tls_context(), timeout=10)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except OSError:
            return 0, {}, b""
        finally:
            connection.close()

    def _tls_context(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.certificate.cert))

    def chromium_args(self) -> list[str]:
        """Flags for a Chromium to reach HOST at 127.0.0.1 and trust this one certificate."""
        return [
            f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={self.certificate.spki}",
        ]

    def django(self, code: str, *args: str) -> str:
        """Run Python inside the deployment, as `manage.py shell -c` would on the server: the
        unit's working directory and environment file. Returns what it printed."""
        command = unit_command("parley-migrate.service", self.env_file)
        done = subprocess.run(
            [command.argv[0], "-c", _SHELL, code, *args],
            cwd=command.cwd, env=command.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"inside the deployment:\n{done.stdout}{done.stderr}"
        return done.stdout

    def make_members(self, *usernames: str, password: str | None = None) -> list[Member]:
        """Members with confirmed addresses, each with a signed-in session for a browser."""
        password = password or secrets.token_urlsafe(12)
        specs = [
            {"username": name, "email": f"{name}@example.org", "password": password,
             "display_name": name.capitalize()}
            for name in usernames
        ]  # fmt: skip
        out = self.django(MAKE_MEMBERS, json.dumps(specs))
        made = json.loads(out.rsplit("MEMBERS=", 1)[1])
        return [Member(**{k: m[k] for k in Member.__dataclass_fields__}) for m in made]

    def signed_in_context(self, browser, member: Member, **options):
        """A browser context on this site with `member`'s session."""
        context = browser.new_context(base_url=self.url, **options)
        context.add_cookies([{"name": "sessionid", "value": member.session, "url": self.url}])
        return context

    def tails(self) -> str:
        pieces = [*self.daphnes, self.caddy]
        text = "".join(f"--- {p.name} ---\n{p.tail()}\n" for p in pieces if p is not None)
        if self.turn is not None:
            text += f"--- coturn ---\n{self.turn.tail(30)}\n"
        return text


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to HOST (its name in SNI and in the certificate check) at 127.0.0.1."""

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


# Runs `code` with Django set up, sys.argv being the extra arguments (as a script would see them).
_SHELL = """
import sys, django
sys.argv = sys.argv[1:]
code = sys.argv[0]
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parley.settings")
django.setup()
exec(compile(code, "<deployment>", "exec"), {"__name__": "__main__"})
"""
