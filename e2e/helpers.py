import asyncio
import threading
from pathlib import Path

SCREENS = Path(__file__).resolve().parent.parent / "test-results" / "screens"

# Chromium's flags for every browser test (and bench/call_setup.py): no sandbox, GPU or
# background traffic; for calls, a fake camera and microphone, and ICE candidates on loopback.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Calls: a fake camera and microphone, and ICE candidates on loopback.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot to test-results/screens/, for a person to look at.

    The caret is left alone: Playwright hides it by setting each input's style and restoring
    it, which leaves `style=""` behind; htmx's settle then copies that attribute in an
    out-of-band swap (#room-seq), and the CSP refuses it, as a console error."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=path, full_page=True, caret="initial")
    return path


def say(page, text: str) -> None:
    """Type a message in the room's composer and press Enter."""
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def count_room_sockets(page) -> list:
    """The room sockets `page` opens from now on (a reconnect opens another)."""
    opened = []
    page.on("websocket", lambda ws: "/ws/rooms/" in ws.url and opened.append(ws))
    return opened


def has_no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


class CuttableLink:
    """A TCP link on 127.0.0.1 to a server, which a test can cut and restore.

    Chromium's offline emulation leaves open WebSockets alone, so it cannot show what happens
    when a member's network drops. Pointing that member's browser at this link can: `cut()`
    aborts every connection through it (the browser sees close code 1006, the server a lost
    connection) and refuses new ones until `restore()`.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.up = True
        self.pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self._call(self._listen())
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _listen(self) -> int:
        self.server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _carry(self, reader, writer) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream_writer)
        self.pairs.add(pair)

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.pairs.discard(pair)

    async def _cut(self) -> None:
        self.up = False
        for pair in list(self.pairs):
            for end in pair:
                end.transport.abort()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self.up = True

    async def _shut(self) -> None:
        await self._cut()
        self.server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def close(self) -> None:
        self._call(self._shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
