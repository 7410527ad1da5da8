"""Debian's coturn as a child process of the tests, and a tiny STUN/TURN client to talk to it.

coturn runs the way site/turnserver.conf runs it in production (the TURN REST scheme with a
static auth secret), but from the command line, on 127.0.0.1 only, with everything it writes
under a temporary directory. The measured facts behind each flag are in the team's notes
(turn-in-tests.md): without `-n` coturn reads /etc/turnserver.conf; without
`--allow-loopback-peers` every permission to a 127.0.0.1 peer is refused with 403 and a call
fails 8 ms after its answer.
"""

import hashlib
import hmac
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections import deque
from pathlib import Path

REALM = "parley.test"

BINDING, ALLOCATE, REFRESH = 0x0001, 0x0003, 0x0004
SUCCESS, FAILURE = 0x0100, 0x0110
MAGIC = 0x2112A442
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, LIFETIME = 0x0006, 0x0008, 0x0009, 0x000D
REALM_ATTR, NONCE, XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = 0x0014, 0x0015, 0x0016, 0x0019
FINGERPRINT = 0x8028


def turnserver_path() -> str | None:
    return shutil.which("turnserver")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Coturn:
    """One turnserver on 127.0.0.1:`port`, sharing `secret` with the Parley under test.

    `stop()` ends it by the PID of its own Popen; `start()` again brings a fresh process (with no
    allocations: calls through the old one must restart ICE) up on the same port."""

    def __init__(
        self,
        workdir: Path,
        secret: str | None = None,
        port: int | None = None,
        config: Path | None = None,
    ):
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret = secret or secrets.token_urlsafe(24)
        self.port = port or free_port()
        # Relay ports of our own, out of the way of another coturn's default range.
        self.min_port = 40000 + (self.port % 200) * 50
        self.output: deque[str] = deque(maxlen=400)
        self.process: subprocess.Popen | None = None

    @property
    def urls(self) -> list[str]:
        return [f"turn:127.0.0.1:{self.port}?transport=udp"]

    def command(self) -> list[str]:
        return [
            turnserver_path() or "turnserver",
            # A configuration file to test, with everything below on top; or none at all (without
            # -n coturn would read /etc/turnserver.conf).
            *(["-c", str(self.config)] if self.config else ["-n"]),
            "--listening-ip=127.0.0.1",
            f"--listening-port={self.port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={self.min_port}",
            f"--max-port={self.min_port + 49}",
            "--allow-loopback-peers",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={REALM}",
            "--fingerprint",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-rfc5780",
            "--no-software-attribute",
            f"--userdb={self.workdir / 'turndb'}",
            f"--pidfile={self.workdir / 'turnserver.pid'}",
            "--log-file=stdout",
            "--simple-log",
            "--new-log-timestamp",
            "--verbose",
        ]

    def start(self, timeout: float = 10) -> "Coturn":
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"turnserver exited with {code}:\n{self.tail()}")
            if stun_binding(self.port, timeout=0.2):
                return self
        self.stop()
        raise RuntimeError(f"turnserver gave no STUN reply within {timeout} s:\n{self.tail()}")

    def _drain(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.output.append(line)

    def stop(self, kill: bool = False) -> None:
        """End our turnserver by its PID (SIGKILL with `kill`: a crash, nothing said to clients)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.kill() if kill else process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def tail(self, lines: int = 60) -> str:
        return "".join(list(self.output)[-lines:])


# --- A tiny STUN / TURN client (RFC 5389, RFC 5766) -----------------------------------------


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _message(method: int, attributes: bytes, transaction: bytes) -> bytes:
    return struct.pack("!HHI", method, len(attributes), MAGIC) + transaction + attributes


def _signed(method: int, attributes: bytes, transaction: bytes, key: bytes) -> bytes:
    """Add MESSAGE-INTEGRITY (over the message with its length already counting the attribute)
    and FINGERPRINT."""
    head = _message(method, attributes, transaction)
    head = head[:2] + struct.pack("!H", len(attributes) + 24) + head[4:]
    integrity = hmac.new(key, head, hashlib.sha1).digest()
    body = attributes + _attribute(MESSAGE_INTEGRITY, integrity)
    head = _message(method, body, transaction)
    head = head[:2] + struct.pack("!H", len(body) + 8) + head[4:]
    crc = (zlib.crc32(head) ^ 0x5354554E) & 0xFFFFFFFF
    return _message(method, body + _attribute(FINGERPRINT, struct.pack("!I", crc)), transaction)


def _parse(data: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    kind, length, _magic = struct.unpack("!HHI", data[:8])
    transaction, attributes, offset = data[8:20], {}, 20
    while offset < 20 + length:
        attr, size = struct.unpack("!HH", data[offset : offset + 4])
        attributes.setdefault(attr, data[offset + 4 : offset + 4 + size])
        offset += 4 + size + (-size % 4)
    return kind, transaction, attributes


def _ask(sock: socket.socket, request: bytes, timeout: float) -> tuple[int, dict[int, bytes]]:
    sock.settimeout(timeout)
    sock.send(request)
    while True:
        kind, transaction, attributes = _parse(sock.recv(2048))
        if transaction == request[8:20]:
            return kind, attributes


def stun_binding(port: int, timeout: float = 1.0) -> bool:
    """Whether a STUN server answers a Binding request on 127.0.0.1:`port` over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        try:
            kind, _ = _ask(sock, _message(BINDING, b"", os.urandom(12)), timeout)
        except (TimeoutError, ConnectionRefusedError):
            return False
        return kind == BINDING | SUCCESS


def _error(attributes: dict[int, bytes]) -> int:
    value = attributes.get(ERROR_CODE, b"\0\0\0\0")
    return (value[2] & 0x7) * 100 + value[3]


def turn_allocate(port: int, username: str, password: str, timeout: float = 2.0) -> tuple:
    """Allocate a UDP relay on the TURN server at 127.0.0.1:`port` with a long-term credential,
    as a browser does, and free it again. Returns ("ok", relayed (ip, port)) or ("error", code).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        transport = _attribute(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
        kind, attributes = _ask(sock, _message(ALLOCATE, transport, os.urandom(12)), timeout)
        if kind != ALLOCATE | FAILURE or _error(attributes) != 401:
            return ("error", _error(attributes))
        realm, nonce = attributes[REALM_ATTR], attributes[NONCE]
        key = hashlib.md5(  # noqa: S324 - RFC 5389's long-term credential key is MD5
            f"{username}:{realm.decode()}:{password}".encode()
        ).digest()
        auth = (
            _attribute(USERNAME, username.encode())
            + _attribute(REALM_ATTR, realm)
            + _attribute(NONCE, nonce)
        )
        request = _signed(ALLOCATE, transport + auth, os.urandom(12), key)
        kind, attributes = _ask(sock, request, timeout)
        if kind != ALLOCATE | SUCCESS:
            return ("error", _error(attributes))
        relayed = _xor_address(attributes[XOR_RELAYED_ADDRESS])
        release = _attribute(LIFETIME, struct.pack("!I", 0)) + auth
        _ask(sock, _signed(REFRESH, release, os.urandom(12), key), timeout)
        return ("ok", relayed)


def _xor_address(value: bytes) -> tuple[str, int]:
    port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
    address = struct.unpack("!I", value[4:8])[0] ^ MAGIC
    return socket.inet_ntoa(struct.pack("!I", address)), port
