"""Helpers for browser tests of calls: contacts who can call, a call started and answered the
way people do it, and what WebRTC's getStats() says each page receives."""

import re
from pathlib import Path

from playwright.sync_api import expect

from accounts import services as contact_services
from rooms import services as room_services

CALL_URL = re.compile(r"/calls/(\d+)/(\?audio=1)?$")
CALL_ROW = re.compile(r"(Video|Audio) call · \d+:\d\d")

# Generous for a 2-core machine shared with other test runs; every wait is still bounded.
CONNECT_MS = 30_000
MEDIA_MS = 20_000


def make_contacts(a, b):
    """Two members who are each other's contacts, and their direct conversation."""
    contact_services.contact_request_send(sender=a, username=b.username)
    contact_services.contact_request_send(sender=b, username=a.username)
    return room_services.direct_open(a=a, b=b)


def contact_list(page):
    return page.get_by_role("list", name="Your contacts")


def open_both(caller_page, callee_page, caller, callee, conversation):
    """The callee somewhere on the site and the caller in their conversation, each seeing the
    other online: both member sockets are up, so the ring cannot be missed."""
    callee_page.goto("/")
    caller_page.goto(conversation.get_absolute_url())
    for page, other in ((caller_page, callee), (callee_page, caller)):
        expect(
            contact_list(page).locator(f".presence-of-{other.pk}.presence--online")
        ).to_have_count(1, timeout=CONNECT_MS)


def start_call(caller_page, callee_page, *, kind="Video call", accept="Accept") -> int:
    """The caller clicks "Video call" in the conversation's header, the callee answers from the
    ringing slot; both are on the call page after it. Returns the call's id."""
    caller_page.locator(".direct__header").get_by_role("button", name=kind, exact=True).click()
    expect(caller_page).to_have_url(CALL_URL)
    slot = callee_page.locator("#call-slot")
    expect(slot).to_have_attribute("data-call-state", "incoming", timeout=CONNECT_MS)
    slot.get_by_role("button", name=accept, exact=True).click()
    expect(callee_page).to_have_url(CALL_URL)
    call_id = int(CALL_URL.search(caller_page.url).group(1))
    assert int(CALL_URL.search(callee_page.url).group(1)) == call_id
    return call_id


def wait_connected(page, timeout=CONNECT_MS):
    page.wait_for_function(
        "() => window.parleyCall?.pc?.connectionState === 'connected'", timeout=timeout
    )


# What the page's connection receives, from getStats().
_INBOUND = """async () => {
  const pc = window.parleyCall && window.parleyCall.pc;
  const out = {video: null, audio: null, pair: null};
  if (!pc) return out;
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") out.video = {
      framesDecoded: r.framesDecoded || 0, frameWidth: r.frameWidth || 0,
      frameHeight: r.frameHeight || 0, packetsReceived: r.packetsReceived || 0};
    if (r.type === "inbound-rtp" && r.kind === "audio") out.audio = {
      packetsReceived: r.packetsReceived || 0, totalSamplesReceived: r.totalSamplesReceived || 0};
    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  const pair = pairId && stats.get(pairId);
  if (pair) out.pair = {
    local: stats.get(pair.localCandidateId).candidateType,
    remote: stats.get(pair.remoteCandidateId).candidateType};
  return out;
}"""

# True once `kind`.`field` is above `above` (the reading is taken afresh at every poll).
_ABOVE = """async ({kind, field, above}) => {
  const read = await (INBOUND)();
  return Boolean(read[kind] && read[kind][field] > above);
}""".replace("INBOUND", _INBOUND)

# True once `kind`.`field` has not moved for `quiet` ms: frames have stopped.
_STALLED = """async ({kind, field, quiet}) => {
  const read = await (INBOUND)();
  const value = read[kind] ? read[kind][field] : 0;
  const seen = window.__parleyStall;
  const now = performance.now();
  if (!seen || seen.value !== value) { window.__parleyStall = {value, since: now}; return false; }
  return now - seen.since >= quiet;
}""".replace("INBOUND", _INBOUND)

# True once the received video's shape is `ratio` (width / height) within 3 %, with frames
# still arriving: the encoder may scale a picture down, but never changes its shape.
_SHAPED = """async ({ratio, above}) => {
  const read = await (INBOUND)();
  const v = read.video;
  return Boolean(v && v.frameHeight && Math.abs(v.frameWidth / v.frameHeight - ratio) < ratio * 0.03
    && v.framesDecoded > above);
}""".replace("INBOUND", _INBOUND)


def inbound(page) -> dict:
    return page.evaluate(_INBOUND)


def wait_rising(page, kind, field, by=10, timeout=MEDIA_MS):
    """`kind`.`field` of what `page` receives goes up by more than `by` from now."""
    start = (inbound(page)[kind] or {}).get(field, 0)
    page.wait_for_function(
        _ABOVE,
        arg={"kind": kind, "field": field, "above": start + by},
        polling=250,
        timeout=timeout,
    )


def wait_media_flowing(page, frames=10):
    """Video frames decoded and audio received, both rising on `page`."""
    wait_rising(page, "video", "framesDecoded", by=frames)
    wait_rising(page, "audio", "packetsReceived", by=frames)
    wait_rising(page, "audio", "totalSamplesReceived", by=4800)  # 0.1 s at 48 kHz


def wait_video_stalled(page, quiet_ms=1500, timeout=MEDIA_MS):
    page.evaluate("() => { window.__parleyStall = null; }")
    page.wait_for_function(
        _STALLED,
        arg={"kind": "video", "field": "framesDecoded", "quiet": quiet_ms},
        polling=250,
        timeout=timeout,
    )


def wait_video_shape(page, width, height, frames=10, timeout=MEDIA_MS):
    start = (inbound(page)["video"] or {}).get("framesDecoded", 0)
    page.wait_for_function(
        _SHAPED,
        arg={"ratio": width / height, "above": start + frames},
        polling=250,
        timeout=timeout,
    )


def peer_state(page):
    return page.locator("#peer-state")


def write_y4m(path: Path, width=640, height=480, frames=12) -> Path:
    """A small looping Y4M clip for Chromium's fake camera (--use-file-for-fake-video-capture):
    a camera of another shape than the fake screen (1280x720), with a square that moves."""
    header = f"YUV4MPEG2 W{width} H{height} F20:1 Ip A1:1 C420jpeg\n".encode()
    chroma = bytes([112]) * ((width // 2) * (height // 2)) + bytes([150]) * (
        (width // 2) * (height // 2)
    )
    rows = [bytes([40 + (y * 120) // height]) * width for y in range(height)]
    side = height // 4
    with path.open("wb") as out:
        out.write(header)
        for n in range(frames):
            left = (n * (width - side)) // max(frames - 1, 1)
            top = height // 2 - side // 2
            picture = bytearray(b"".join(rows))
            for y in range(top, top + side):
                start = y * width + left
                picture[start : start + side] = bytes([235]) * side
            out.write(b"FRAME\n" + bytes(picture) + chroma)
    return path
