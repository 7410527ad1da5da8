"""Call setup benchmark: how long a call takes to ring, and to show video once answered.

Two members (two browser contexts of the system Chromium, with its fake camera and microphone)
call each other --calls times against a daphne of this script's own, inside a private network
namespace with loopback only (the script re-runs itself under `unshare -n` when it may). For each
call it measures, from marks the pages take with one clock (performance.timeOrigin + now()):

* ring: the caller's click on "Video call" -> the callee's tab shows the incoming call
  (#call-slot data-call-state=incoming appears); target p90 <= 150 ms;
* accept -> video: the callee's click on Accept -> the first remote video frame presented
  (requestVideoFrameCallback on #remote-video) on the callee's and the caller's page;
  target median <= 500 ms;

and where the time goes on the way, as a timeline from the Accept click (the steps overlap:
Accept swaps the call page in with htmx, and the camera and the call socket start at the
click): the accept's answer, the call page, getUserMedia, the call socket, the welcome and
ready frames, the offer and answer, ICE, the first frame. Each figure is the median over the
runs of each run's median (or p90); the machine's CPU use during each run is printed with it
(other work on the machine shows in the figures: compare runs at similar load).

    .venv/bin/python bench/call_setup.py                 # 20 calls, median of 3 runs
    .venv/bin/python bench/call_setup.py --calls 5 --runs 1 --json /tmp/parley-bench/calls.json

Everything it starts (daphne, Chromium) is stopped by its own handle; all traffic is on
127.0.0.1. Figures and how to read them: docs/performance.md ("Call setup").
"""

# A benchmark driver, not server code: it starts its own processes with fixed argument lists and
# keeps its files under --workdir.
# ruff: noqa: S108, S603, S606, S607

import argparse
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from chat_fanout import log, machine_busy, start_servers, stop, wait_quiet

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
from e2e.helpers import CHROMIUM_FLAGS  # noqa: E402  (the browser tests' own flags)

TARGETS = {"ring_p90_ms": 150, "accept_to_video_median_ms": 500}


# Runs in every page before its own scripts: each mark goes to Python once per page load, named,
# with the page's time in ms since the epoch (one clock for both contexts: same machine).
MARKS = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const seen = new Set();
  const mark = (name, at) => {
    if (seen.has(name)) return;
    seen.add(name);
    window.benchMark(name, at === undefined ? now() : at);
  };
  mark("nav_start", performance.timeOrigin);
  // The call page: loaded, or swapped in by an Accept (htmx; then "accept_answer" is when the
  // accept's answer arrived, just before the swap).
  const watched = new WeakSet();
  const watchCall = () => {
    const video = document.querySelector("#remote-video");
    if (!video || watched.has(video)) return;
    watched.add(video);
    mark("call_page");
    if (video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback(() => mark("first_frame"));
    }
    // Decoded even if the page may not play it (autoplay): getStats, polled.
    let asking = false;
    const poll = setInterval(async () => {
      const pc = window.parleyCall && window.parleyCall.pc;
      if (!pc || asking) return;
      asking = true;
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0) {
            mark("frames_decoded");
            clearInterval(poll);
          }
        });
      } finally {
        asking = false;
      }
    }, 10);
  };
  document.addEventListener("htmx:beforeSwap", (event) => {
    const path = event.detail.requestConfig && event.detail.requestConfig.path;
    if (!path || !path.includes("/accept/")) return;
    mark("accept_answer");
    // The accept's request itself, from Resource Timing: when it went out, when its answer's
    // first and last bytes came (the server's time, then the transfer).
    const entry = performance.getEntriesByType("resource")
      .filter((e) => e.name.includes("/accept/")).pop();
    if (entry && entry.responseEnd) {
      mark("accept_sent", performance.timeOrigin + entry.requestStart);
      mark("accept_first_byte", performance.timeOrigin + entry.responseStart);
      mark("accept_last_byte", performance.timeOrigin + entry.responseEnd);
    }
  });
  addEventListener("DOMContentLoaded", () => {
    const nav = performance.getEntriesByType("navigation")[0];
    if (nav) mark("response_end", performance.timeOrigin + nav.responseEnd);
    // A call page loaded after the accept's redirect (the way without htmx's swap).
    if (nav && document.querySelector("#call")) {
      mark("accept_answer", performance.timeOrigin + nav.responseEnd);
    }
    mark("dom_ready");
    watchCall();
    const incoming = () => {
      if (document.querySelector('#call-slot[data-call-state="incoming"]')) mark("ringing");
    };
    incoming();
    new MutationObserver(() => {
      incoming();
      watchCall();
    }).observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-call-state"],
    });
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const at = performance.timeOrigin + event.timeStamp;
    const label = button && (button.getAttribute("aria-label") || button.textContent.trim());
    if (label) mark("click:" + label, at);
  }, true);

  const media = navigator.mediaDevices;
  if (media && media.getUserMedia) {
    const getUserMedia = media.getUserMedia.bind(media);
    media.getUserMedia = async (constraints) => {
      mark("gum_start");
      const stream = await getUserMedia(constraints);
      mark("gum_done");
      return stream;
    };
  }

  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    constructor(url, protocols) {
      super(url, protocols);
      const kind = String(url).includes("/ws/calls/") ? "call" : "ws";
      if (kind !== "call") {
        this.addEventListener("open", () => mark("ws_open:" + new URL(url, location).pathname));
        return;
      }
      mark("call_ws_new");
      this.addEventListener("open", () => mark("call_ws_open"));
      this.addEventListener("message", (event) => {
        try {
          const frame = JSON.parse(event.data);
          mark("in:" + frame.type + (frame.description ? ":" + frame.description.type : ""));
        } catch (error) {}
      });
    }
    send(data) {
      if (String(this.url).includes("/ws/calls/")) {
        try {
          const frame = JSON.parse(data);
          mark("out:" + frame.type + (frame.description ? ":" + frame.description.type : ""));
        } catch (error) {}
      }
      return super.send(data);
    }
  };

  const NativePeer = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePeer {
    constructor(...args) {
      super(...args);
      mark("pc_new");
      const ice = () => mark("ice:" + this.iceConnectionState);
      this.addEventListener("iceconnectionstatechange", ice);
      this.addEventListener("connectionstatechange", () => mark("pc:" + this.connectionState));
      this.addEventListener("track", () => mark("track"));
    }
  };
})();
"""

# (label, mark): when each had happened, in ms after the callee's click on Accept. A timeline,
# not a sum: since the Accept swaps the call page in, the camera and the call socket start at
# the click, in parallel with the accept's request; the caller's offer is made while it rings.
CALLEE_STEPS = [
    ("the accept's request goes out (htmx)", "accept_sent"),
    ("its answer's first byte (the server's time before it)", "accept_first_byte"),
    ("its answer's last byte", "accept_last_byte"),
    (
        "the accept's answer arrives (the call page's response after the redirect, or htmx's)",
        "accept_answer",
    ),
    ("the call page is there (DOM ready, or swapped in)", "call_page"),
    ("camera and microphone (getUserMedia) done", "gum_done"),
    ("call socket open", "call_ws_open"),
    ("welcome in", "in:welcome"),
    ("ready in", "in:ready"),
    ("connection made", "pc_new"),
    ("the caller's offer in", "in:description:offer"),
    ("answer out", "out:description:answer"),
    ("ICE+DTLS connected", "pc:connected"),
    ("first remote frame shown", "first_frame"),
]
CALLER_STEPS = [
    ("ready in", "in:ready"),
    ("offer out", "out:description:offer"),
    ("answer in", "in:description:answer"),
    ("ICE+DTLS connected", "pc:connected"),
    ("first remote frame shown", "first_frame"),
]

# Signaling hops through the server: one page's frame out -> the other page's frame in.
HOPS = [
    (
        "offer: caller out -> callee in",
        "ada",
        "out:description:offer",
        "bob",
        "in:description:offer",
    ),
    (
        "answer: callee out -> caller in",
        "bob",
        "out:description:answer",
        "ada",
        "in:description:answer",
    ),
]


def in_private_network() -> bool:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def reexec_in_netns() -> None:
    """Run this script again inside a network namespace with only loopback, when we may."""
    if os.environ.get("PARLEY_BENCH_NETNS") or in_private_network():
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        log("not root or no unshare: running in the machine's own network namespace")
        return
    command = " ".join(["exec", sys.executable, *map(shlex.quote, sys.argv)])
    env = {**os.environ, "PARLEY_BENCH_NETNS": "1"}
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", f"ip link set lo up && {command}"], env)


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile, nearest rank (as chat_fanout.py)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def setup_database(env: dict, workdir: Path) -> dict:
    """Migrate a fresh SQLite file, make two contacts and a session each (in a subprocess with
    the server's environment: this process keeps no Django state)."""
    script = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from accounts import services
from accounts.models import User
call_command("migrate", verbosity=0, interactive=False)
if os.environ.get("DEBUG") != "1":
    call_command("collectstatic", verbosity=0, interactive=False)
ada = User.objects.create_user("ada", "ada@example.invalid", "bench-not-secret", display_name="Ada")
bob = User.objects.create_user("bob", "bob@example.invalid", "bench-not-secret", display_name="Bob")
services.contact_request_send(sender=ada, username="bob")
services.contact_request_send(sender=bob, username="ada")
out = {}
for user in (ada, bob):
    s = SessionStore()
    s["_auth_user_id"] = str(user.pk)
    s["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    s["_auth_user_hash"] = user.get_session_auth_hash()
    s.create()
    out[user.username] = s.session_key
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        raise RuntimeError("setup failed:\n" + done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


class Marks:
    """The marks each page sent since the last reset, by page."""

    def __init__(self):
        self.by_page: dict[str, dict[str, float]] = {}

    def reset(self) -> None:
        self.by_page = {}

    def binding(self, who: str):
        def receive(source, name, at):
            self.by_page.setdefault(who, {}).setdefault(name, at)

        return receive

    def get(self, who: str, name: str) -> float | None:
        return self.by_page.get(who, {}).get(name)

    def first_frame(self, who: str) -> float | None:
        """The first remote frame shown or, if the page could not play it, decoded."""
        return self.get(who, "first_frame") or self.get(who, "frames_decoded")

    def wait(self, who: str, name: str, page, timeout: float = 60.0) -> float:
        # Long: on a busy machine a call can take more than 15 s, and one that never comes
        # ends the run.
        deadline = time.monotonic() + timeout
        get = self.first_frame if name == "first_frame" else lambda w: self.get(w, name)
        while (at := get(who)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{who}: no {name!r} within {timeout} s; got {self.by_page}")
            page.wait_for_timeout(10)
        return at


def one_call(marks: Marks, ada_page, bob_page, url: str, settle: float) -> dict:
    marks.reset()
    ada_page.goto(f"{url}/people/bob/")
    bob_page.goto(f"{url}/")
    marks.wait("bob", "ws_open:/ws/member/", bob_page)
    marks.wait("ada", "ws_open:/ws/member/", ada_page)
    bob_page.wait_for_timeout(settle * 1000)  # both pages idle, as a person's would be
    marks.reset()

    ada_page.get_by_role("button", name="Video call", exact=True).click()
    ring = marks.wait("bob", "ringing", bob_page)
    # The caller's call page loads and takes its seat while it rings; the callee answers once it
    # has (a person takes longer than that to reach for the button).
    marks.wait("ada", "in:welcome", ada_page)
    bob_page.wait_for_timeout(settle * 1000)
    bob_page.locator("#call-slot").get_by_role("button", name="Accept", exact=True).click()
    marks.wait("bob", "first_frame", bob_page)
    marks.wait("ada", "first_frame", ada_page)
    accept = marks.get("bob", "click:Accept")
    result = {
        "ring_ms": ring - marks.get("ada", "click:Video call"),
        "callee_video_ms": marks.first_frame("bob") - accept,
        "caller_video_ms": marks.first_frame("ada") - accept,
        "frames_shown": [bool(marks.get(w, "first_frame")) for w in ("bob", "ada")],
        "callee": {},
        "caller": {},
    }
    for side, who, steps in (("callee", "bob", CALLEE_STEPS), ("caller", "ada", CALLER_STEPS)):
        for label, name in steps:
            at = marks.first_frame(who) if name == "first_frame" else marks.get(who, name)
            # A mark from before the click (the caller's offer, made while it rings) counts as 0.
            result[side][label] = None if at is None else max(0.0, at - accept)
    result["hops"] = {}
    for label, who_a, start, who_b, end in HOPS:
        a, b = marks.get(who_a, start), marks.get(who_b, end)
        result["hops"][label] = None if a is None or b is None else b - a
    result["marks"] = marks.by_page
    ada_page.locator("#call-hangup").click()
    ada_page.wait_for_url(lambda u: "/calls/" not in u, timeout=10_000)
    bob_page.wait_for_url(
        lambda u: "/calls/" not in u, timeout=10_000
    )  # the call page's own return
    return result


def run_once(args, run: int) -> dict:
    from playwright.sync_api import sync_playwright

    workdir = Path(args.workdir) / f"{time.strftime('%H%M%S')}-calls-r{run}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        DEBUG="1" if args.debug else "0",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="parley.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        # Ten calls a minute is a person's limit (parley/ratelimits.py); a call every few
        # seconds here would be refused after the tenth.
        WRITE_RATE_LIMITS="0",
    )
    if not args.debug:
        # As in production, but over plain http on loopback: hashed static files that pages
        # cache for good (with DEBUG on, every page load asks again for each of them).
        env.update(
            SECRET_KEY=secrets.token_urlsafe(50),
            SECURE_SSL_REDIRECT="0",
            SECURE_HSTS_SECONDS="0",
            STATIC_ROOT=str(workdir / "static"),
        )
    sessions = setup_database(env, workdir)
    servers: list[subprocess.Popen] = []
    calls: list[dict] = []
    try:
        [port] = start_servers(args, env, 1, workdir, servers)
        url = f"http://127.0.0.1:{port}"
        marks = Marks()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                pages = {}
                for who in ("ada", "bob"):
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.add_cookies([{"name": "sessionid", "value": sessions[who], "url": url}])
                    context.expose_binding("benchMark", marks.binding(who))
                    context.add_init_script(MARKS)
                    pages[who] = context.new_page()
                for i in range(args.warmup + args.calls):
                    result = one_call(marks, pages["ada"], pages["bob"], url, args.settle)
                    if i >= args.warmup:
                        calls.append(result)
                    log(
                        f"run {run} call {i - args.warmup + 1}: ring {result['ring_ms']:.0f} ms,"
                        f" video callee {result['callee_video_ms']:.0f} ms,"
                        f" caller {result['caller_video_ms']:.0f} ms"
                        + (" (warm-up)" if i < args.warmup else "")
                    )
            finally:
                browser.close()
    finally:
        for server in servers:
            stop(server)
    (workdir / "calls.json").write_text(json.dumps(calls, indent=1))
    return summarize(calls)


def summarize(calls: list[dict]) -> dict:
    def figures(values):
        values = [v for v in values if v is not None]
        return {"median": statistics.median(values) if values else None, "p90": pct(values, 0.9)}

    out = {
        "calls": len(calls),
        "ring_ms": figures([c["ring_ms"] for c in calls]),
        "callee_video_ms": figures([c["callee_video_ms"] for c in calls]),
        "caller_video_ms": figures([c["caller_video_ms"] for c in calls]),
    }
    for side in ("callee", "caller", "hops"):
        out[side] = (
            {label: figures([c[side][label] for c in calls]) for label in calls[0][side]}
            if calls
            else {}
        )
    return out


def median_of_runs(runs: list[dict]) -> dict:
    """Each figure's median over the runs."""

    def walk(items):
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([i[k] for i in items]) for k in first}
        if isinstance(first, list):
            return items
        values = [i for i in items if i is not None]
        return statistics.median(values) if values else None

    return walk(runs)


def report(summary: dict, runs: int) -> str:
    def cell(fig):
        return "-" if fig is None else f"{fig:.0f}"

    lines = [
        f"Median of {runs} run(s) of {summary['calls']} calls; ms. The machine used"
        f" {summary.get('machine_cpu_cores', 0):.2f} cores on average during a run.",
        "",
        "| figure | median | p90 | target |",
        "| --- | ---: | ---: | --- |",
        f"| ring (caller's click -> callee's tab rings) | {cell(summary['ring_ms']['median'])}"
        f" | {cell(summary['ring_ms']['p90'])} | p90 <= {TARGETS['ring_p90_ms']} |",
    ]
    for key, label in (("callee_video_ms", "callee"), ("caller_video_ms", "caller")):
        lines.append(
            f"| Accept -> first remote frame, {label} | {cell(summary[key]['median'])}"
            f" | {cell(summary[key]['p90'])} | median <= {TARGETS['accept_to_video_median_ms']} |"
        )
    for side in ("callee", "caller"):
        lines += [
            "",
            f"Where the {side}'s time goes: when each step had happened, ms after the callee's"
            " Accept click (a timeline; steps overlap, 0 = before the click):",
            "",
        ]
        lines += ["| step | median | p90 |", "| --- | ---: | ---: |"]
        for label, fig in summary[side].items():
            lines.append(f"| {label} | {cell(fig['median'])} | {cell(fig['p90'])} |")
    lines += ["", "Signaling through the server (one page's send -> the other's receive):", ""]
    lines += ["| hop | median | p90 |", "| --- | ---: | ---: |"]
    for label, fig in summary["hops"].items():
        lines.append(f"| {label} | {cell(fig['median'])} | {cell(fig['p90'])} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    python = platform.python_version()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}; Python {python}; {chromium}"


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="calls made first and not counted")
    parser.add_argument("--settle", type=float, default=0.5, help="idle seconds before each click")
    parser.add_argument(
        "--wait-quiet", type=float, default=120, help="wait up to this long for an idle machine"
    )
    parser.add_argument("--port", type=int, default=8965)
    parser.add_argument(
        "--debug",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve with DEBUG=1 (the default); --no-debug: production settings over http",
    )
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--server-script", help="run this file instead of `-m daphne`")
    parser.add_argument("--repo", default=str(REPO), help="the Parley checkout to serve")
    parser.add_argument("--workdir", default="/tmp/parley-bench")
    parser.add_argument("--json", help="write every run's summary here")
    args = parser.parse_args()
    reexec_in_netns()

    log(machine(), "; private network" if in_private_network() else "")
    runs = []
    for run in range(args.runs):
        wait_quiet(args.wait_quiet)
        busy, wall = machine_busy(), time.monotonic()
        runs.append(run_once(args, run))
        # The whole machine's CPU during the run, this benchmark's own included (a browser, a
        # server and this script use about one core between them).
        runs[-1]["machine_cpu_cores"] = round(
            (machine_busy() - busy) / (time.monotonic() - wall), 2
        )
        log(f"run {run}: the machine used {runs[-1]['machine_cpu_cores']} cores on average")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1))
    summary = median_of_runs(runs)
    print(report(summary, len(runs)))
    ok = (summary["ring_ms"]["p90"] or 1e9) <= TARGETS["ring_p90_ms"] and max(
        summary["callee_video_ms"]["median"] or 1e9, summary["caller_video_ms"]["median"] or 1e9
    ) <= TARGETS["accept_to_video_median_ms"]
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
