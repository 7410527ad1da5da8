"""Load-generator worker: holds a share of the members' room sockets and records deliveries.

Started by chat_fanout.py, one or more per run. It speaks a minimal RFC 6455 client directly on
asyncio.Protocol (no per-socket task, no per-frame await), so that 1,000 sockets cost the client
as little CPU as possible: it shares the machine's cores with the server it measures.

Control: one JSON command per line on stdin, one JSON reply per line on stdout.
  {"cmd": "connect", ...}   open this worker's sockets, send {"action": "resume", "after": 0}
  {"cmd": "warmup", ...}    open and close one socket per server (before the RSS baseline)
  {"cmd": "phase", ...}     send the scheduled messages of this worker's members, wait until
                            every socket has every expected message or the drain deadline,
                            write the latencies to a file and reply with the counts
  {"cmd": "close"}          close every socket and exit
"""

# ruff: noqa: ASYNC109, ASYNC110, ASYNC230

import array
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import struct
import sys
import time

# The body may go on after the numbers (frozen_tab.py pads it: --pad).
BENCH_RE = re.compile(rb'class="message__body">bench (\d+) (\d+)[ <]')
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Phase:
    def __init__(self, expected: set[int], sockets: int):
        self.expected = expected
        self.want = len(expected) * sockets  # (message, socket) pairs
        self.got = 0
        self.latencies = array.array("q")
        self.latency_ids = array.array("q")  # the message of each latency, same order
        self.ack_latencies = array.array("q")
        self.last_recv_ns = 0
        self.first_send_ns = 0
        self.last_send_ns = 0
        self.duplicates = 0
        self.unexpected = 0
        self.refused: list[int] = []
        self.done = asyncio.Event()
        if self.want == 0:
            self.done.set()


class Socket(asyncio.Protocol):
    def __init__(self, worker: "Worker", member: dict, port: int):
        self.worker = worker
        self.member = member
        self.port = port
        self.transport = None
        self.upgraded = False
        self.buf = b""
        self.fragments: list[bytes] = []
        self.opened = asyncio.get_running_loop().create_future()
        self.seen: set[int] = set()
        self.outstanding: list[tuple[int, int]] = []  # (msg_id, sent_ns) awaiting a composer
        self.presence_frames = 0
        self.alerts = 0
        self.close_code: int | None = None
        self.closed = False

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        host = f"127.0.0.1:{self.port}"
        request = (
            f"GET /ws/rooms/{self.worker.room_id}/ HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Origin: http://{host}\r\n"
            f"Cookie: sessionid={self.member['session']}\r\n"
            "\r\n"
        )
        transport.write(request.encode())

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before upgrade: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                self.buf = b""
                return
            self.upgraded = True
            self.opened.set_result(True)
            buf = buf[end + 4 :]
        # frames (server frames are never masked)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if size - pos < head + length:
                break
            payload = buf[pos + head : pos + head + length]
            pos += head + length
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode == OP_CONT or not fin:
                self.fragments.append(payload)
                if not fin:
                    continue
                payload = b"".join(self.fragments)
                self.fragments = []
            if opcode in (OP_TEXT, OP_CONT):
                self.on_text(payload, now)
            elif opcode == OP_CLOSE:
                self.close_code = (
                    struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                )
                if not self.closed:
                    self._write_frame(OP_CLOSE, payload[:2])
                    self.transport.close()
                self.closed = True
            elif opcode == OP_PING:
                self._write_frame(OP_PONG, payload)
        self.buf = buf[pos:] if pos < size else b""

    # --- frames -----------------------------------------------------------------------------

    def _write_frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        if n:
            key = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.transport.write(head + mask + data)

    def send_json(self, obj: dict) -> None:
        self._write_frame(OP_TEXT, json.dumps(obj).encode())

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self._write_frame(OP_CLOSE, struct.pack("!H", 1000))
            self.closed = True
            asyncio.get_running_loop().call_later(1.0, self.transport.close)

    def on_text(self, payload: bytes, now: int) -> None:
        worker = self.worker
        phase = worker.phase
        if b"message__body" in payload:
            for match in BENCH_RE.finditer(payload):
                msg_id = int(match.group(1))
                if msg_id in self.seen:
                    if phase is not None:
                        phase.duplicates += 1
                    continue
                self.seen.add(msg_id)
                if phase is None or msg_id not in phase.expected:
                    if phase is not None:
                        phase.unexpected += 1
                    continue
                phase.latencies.append(now - int(match.group(2)))
                phase.latency_ids.append(msg_id)
                phase.got += 1
                if now > phase.last_recv_ns:
                    phase.last_recv_ns = now
                if phase.got >= phase.want:
                    phase.done.set()
        elif b'id="composer"' in payload:
            if self.outstanding:
                msg_id, sent_ns = self.outstanding.pop(0)
                if b'role="alert"' in payload:
                    if phase is not None:
                        phase.refused.append(msg_id)
                elif phase is not None:
                    phase.ack_latencies.append(now - sent_ns)
        elif b'id="room-presence"' in payload:
            self.presence_frames += 1
        elif b'role="alert"' in payload:
            self.alerts += 1

    def send_message(self, msg_id: int) -> None:
        sent = time.time_ns()
        self.outstanding.append((msg_id, sent))
        body = f"bench {msg_id} {sent}{self.worker.pad}"
        self.send_json({"action": "send", "body": body, "key": f"k{msg_id}"})
        return sent


class Worker:
    def __init__(self, config: dict):
        self.room_id = config["room_id"]
        self.ports = config["ports"]
        # members: [{"index": i, "id": pk, "session": key, "port": p}]
        self.members = config["members"]
        self.sockets: dict[int, Socket] = {}
        self.phase: Phase | None = None
        self.out_dir = config["out_dir"]
        self.name = config["name"]
        self.pad = config.get("pad", "")

    async def open(self, member: dict, timeout: float = 60.0) -> Socket:
        loop = asyncio.get_running_loop()
        _, sock = await asyncio.wait_for(
            loop.create_connection(
                lambda: Socket(self, member, member["port"]), "127.0.0.1", member["port"]
            ),
            timeout,
        )
        await asyncio.wait_for(sock.opened, timeout)
        return sock

    async def cmd_warmup(self, msg: dict) -> dict:
        done = 0
        for port in self.ports:
            member = dict(self.members[0], port=port)
            sock = await self.open(member)
            sock.send_json({"action": "resume", "after": 0})
            await asyncio.sleep(1.0)
            sock.close()
            done += 1
        await asyncio.sleep(1.0)
        return {"warmed": done}

    async def cmd_connect(self, msg: dict) -> dict:
        limit = asyncio.Semaphore(msg.get("concurrency", 50))
        failures: list[str] = []
        started = time.monotonic()
        cpu0 = cpu_seconds()

        async def one(member: dict) -> None:
            async with limit:
                try:
                    sock = await self.open(member)
                except Exception as exc:
                    failures.append(f"{member['index']}: {exc!r}")
                    return
                sock.send_json({"action": "resume", "after": 0})
                self.sockets[member["index"]] = sock

        await asyncio.gather(*(one(m) for m in self.members))
        return {
            "connected": len(self.sockets),
            "failures": failures[:10],
            "failed": len(failures),
            "seconds": time.monotonic() - started,
            "cpu": cpu_seconds() - cpu0,
        }

    async def cmd_phase(self, msg: dict) -> dict:
        loop = asyncio.get_running_loop()
        expected = set(msg["expected"])
        live = [s for s in self.sockets.values() if not s.closed]
        phase = self.phase = Phase(expected, len(live))
        sends = [s for s in msg["sends"] if s[2] in self.sockets]
        start_ns = msg["start_ns"]
        cpu0 = cpu_seconds()
        wall0 = time.monotonic()

        def fire(msg_id: int, index: int) -> None:
            sock = self.sockets[index]
            if sock.closed:
                return
            sent = sock.send_message(msg_id)
            if not phase.first_send_ns or sent < phase.first_send_ns:
                phase.first_send_ns = sent
            phase.last_send_ns = max(phase.last_send_ns, sent)

        # Schedule on the loop's monotonic clock, anchored to the shared wall-clock start.
        anchor = loop.time() + (start_ns - time.time_ns()) / 1e9
        for offset, msg_id, index in sends:
            loop.call_at(anchor + offset, fire, msg_id, index)
        send_end = anchor + (max((s[0] for s in msg["sends"]), default=0))
        deadline = send_end + msg["drain_timeout"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(phase.done.wait(), max(0.1, deadline - loop.time()))
        # Never stop before this worker's own sends have all gone out.
        while loop.time() < send_end + 0.05:
            await asyncio.sleep(0.05)
        missing_pairs = 0
        missing_by_msg: dict[int, int] = {}
        for sock in live:
            gone = expected - sock.seen
            missing_pairs += len(gone)
            for m in gone:
                missing_by_msg[m] = missing_by_msg.get(m, 0) + 1
        path = os.path.join(self.out_dir, f"{self.name}-{msg['name']}.lat")
        with open(path, "wb") as fh:
            phase.latencies.tofile(fh)
        with open(path + ".ids", "wb") as fh:
            phase.latency_ids.tofile(fh)
        ack_path = path + ".ack"
        with open(ack_path, "wb") as fh:
            phase.ack_latencies.tofile(fh)
        self.phase = None
        return {
            "sockets": len(live),
            "closed_now": sum(1 for s in self.sockets.values() if s.closed),
            "close_codes": sorted(
                {s.close_code for s in self.sockets.values() if s.closed}, key=str
            ),
            "got": phase.got,
            "want": phase.want,
            "missing": missing_pairs,
            "missing_by_msg": dict(sorted(missing_by_msg.items())[:20]),
            "duplicates": phase.duplicates,
            "unexpected": phase.unexpected,
            "refused": phase.refused,
            "first_send_ns": phase.first_send_ns,
            "last_send_ns": phase.last_send_ns,
            "last_recv_ns": phase.last_recv_ns,
            "latency_file": path,
            "ack_file": ack_path,
            "cpu": cpu_seconds() - cpu0,
            "wall": time.monotonic() - wall0,
            "alerts": sum(s.alerts for s in self.sockets.values()),
            "presence_frames": sum(s.presence_frames for s in self.sockets.values()),
        }

    async def cmd_close(self, msg: dict) -> dict:
        for sock in self.sockets.values():
            sock.close()
        await asyncio.sleep(1.2)
        return {"closed": len(self.sockets)}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = json.loads(await reader.readline())
    worker = Worker(config)
    print(json.dumps({"ready": worker.name, "members": len(worker.members)}), flush=True)
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        handler = getattr(worker, f"cmd_{msg['cmd']}")
        try:
            reply = await handler(msg)
        except Exception as exc:
            reply = {"error": repr(exc)}
        print(json.dumps(reply), flush=True)
        if msg["cmd"] == "close":
            break


if __name__ == "__main__":
    asyncio.run(main())
