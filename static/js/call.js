// Parley's one hand-written script: an ES module served by this site (script-src 'self').
//
// On every signed-in page it rings for an incoming call in #call-slot (and shows a browser
// notification when the tab is hidden). On the call page (#call) it does the WebRTC: camera
// and microphone, the call socket, and one RTCPeerConnection with the "perfect negotiation"
// pattern (the callee is the polite side).
//
// Everything else on the page is server-rendered. Nothing that arrives over the socket is ever
// parsed as HTML: this module writes only textContent and attributes, and only its own words.

const SELECTORS = {
  slot: "#call-slot",
  ring: ".call-slot__ring",
  notify: "[data-call-notify]",
  call: "#call",
  status: "#call-status",
  timer: "#call-timer",
  quality: "#call-quality",
  problem: "#call-problem",
  problemText: "#call-problem-text",
  retry: "#call-retry",
  joinAudio: "#call-join-audio",
  joinNone: "#call-join-none",
  play: "#call-play",
  remote: "#call-remote",
  remoteVideo: "#remote-video",
  local: "#call-local",
  localVideo: "#local-video",
  peerState: "#peer-state",
  mute: "#call-mute",
  camera: "#call-camera",
  share: "#call-share",
  mic: "#call-mic",
  camSelect: "#call-cam-select",
  chat: "#call-chat-body",
};

const QUALITY_EVERY_MS = 2000;
const RESTART_GRACE_MS = 1000; // a "disconnected" often heals by itself within a second
const RESTART_BACKOFF_MS = [2000, 3000, 5000, 8000];
const CONNECT_DEADLINE_MS = 15000; // no media path at all by then: say so
const RETURN_AFTER_MS = 2000;
const SOCKET_BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
// The conversation beside the call loads once the call is up, or after this long whatever
// happens (CallPage.loadChatLater says why).
const CHAT_AT_MOST_MS = 3000;
const CHAT_AFTER_CONNECTED_MS = 500; // connected: the first frame is usually this close
const HEAD_START_MS = 10000; // an Accept's head start not taken over by then is dropped
// A new connection's video starts at 1/FIRST_SCALE of the width and height, and is sent whole
// this long after it connects (CallPage.setScale says why).
const FIRST_SCALE = 2;
const FULL_PICTURE_AFTER_MS = 1000;

const TEXT = {
  ringing: (name) => `Calling ${name}…`,
  connecting: (name) => `Connecting to ${name}…`,
  connected: "Connected",
  reconnecting: "Reconnecting …",
  ended: "The call has ended.",
  moved: "This call continues in another tab.",
  loggedOut: "You have been logged out, so the call has stopped.",
  crowded: "Too many open tabs: close some, and the call reconnects by itself.",
  noPath: "The network between you blocks calls; ask your admin about TURN.",
  turnRefused:
    "The TURN server refused the credentials for this call, so it cannot be relayed; ask your admin to check the TURN settings.",
  lost: (name) => `The connection to ${name} was lost. Trying again…`,
  denied:
    "Parley is not allowed to use your camera or microphone. Allow them for this site in your browser's settings and try again, or join without them.",
  noCamera: "No camera was found. You can join with your microphone only.",
  noMicrophone: "No microphone was found. You can join without it.",
  noDevices: "No camera or microphone was found. You can still see and hear the other side.",
  busyDevice:
    "Your camera or microphone is in use by another program. Close it and try again, or join without them.",
  insecure: "This browser allows cameras and microphones only on secure (https) pages.",
  otherMedia: "Your camera or microphone could not be started. Try again, or join without them.",
  shareFailed: "Screen sharing did not start.",
  notification: (name) => `${name} is calling you`,
};

// --- Ringing, on every page ------------------------------------------------------------------

// What rings now; tests read it as window.parleyRing.
const ringing = { callId: null, audio: null, notification: null, playing: false, blocked: false };
window.parleyRing = ringing;

function startRing(slot) {
  ringing.callId = slot.dataset.callId || "?";
  ringing.audio = slot.querySelector(SELECTORS.ring);
  playRing();
  if (document.hidden) notifyIncoming(slot);
}

function playRing() {
  const audio = ringing.audio;
  if (!audio) return;
  audio.loop = true;
  ringing.blocked = false;
  audio.play().then(() => {
    if (ringing.audio === audio) ringing.playing = true;
  }, () => {
    if (ringing.audio === audio) ringing.blocked = true;
    // Autoplay is refused until the person has interacted with the site: ring at their first
    // click or key press, if the call is still ringing by then.
    const retry = () => {
      removeEventListener("pointerdown", retry, true);
      removeEventListener("keydown", retry, true);
      if (ringing.audio === audio) playRing();
    };
    addEventListener("pointerdown", retry, true);
    addEventListener("keydown", retry, true);
  });
}

function notifyIncoming(slot) {
  if (ringing.notification || !("Notification" in window)) return;
  if (Notification.permission !== "granted") return;
  const name = slot.dataset.callerName || "Someone";
  try {
    const notification = new Notification(TEXT.notification(name), {
      tag: `parley-call-${ringing.callId}`, // one per call, however many tabs ring
      icon: document.querySelector('link[rel="icon"]')?.href,
      requireInteraction: true,
    });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
    });
    ringing.notification = notification;
  } catch {
    // Some browsers (Chrome on Android) allow notifications only from a service worker.
  }
}

function stopRing() {
  ringing.audio?.pause();
  ringing.notification?.close();
  ringing.callId = ringing.audio = ringing.notification = null;
  ringing.playing = ringing.blocked = false;
}

function checkSlot() {
  const slot = document.querySelector(SELECTORS.slot);
  const incoming = slot?.dataset.callState === "incoming";
  const callId = incoming ? slot.dataset.callId || "?" : null;
  if (callId !== ringing.callId) {
    stopRing();
    if (incoming) startRing(slot);
  } else if (incoming && slot.querySelector(SELECTORS.ring) !== ringing.audio) {
    // The same call, re-rendered: carry on ringing with the new element.
    ringing.audio?.pause();
    ringing.audio = slot.querySelector(SELECTORS.ring);
    playRing();
  }
  wireNotifyButtons();
  if (slot) document.dispatchEvent(new CustomEvent("parley:call-slot", { detail: { slot } }));
}

/** Buttons marked data-call-notify ask for notification permission (a user gesture is needed),
 * and are shown only while the browser has not been asked yet. */
function wireNotifyButtons() {
  const askable = "Notification" in window && Notification.permission === "default";
  for (const button of document.querySelectorAll(SELECTORS.notify)) {
    button.hidden = !askable;
    if (button.dataset.wired) continue;
    button.dataset.wired = "1";
    button.addEventListener("click", async () => {
      await Notification.requestPermission();
      wireNotifyButtons();
    });
  }
}

function watchSlot() {
  // htmx swaps #call-slot out of band (from the member socket, or a Dismiss): watch for it.
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      checkSlot();
      if (pageProcessed) startCallPage(); // an Accept swapped the call page in
    });
  }).observe(document.body, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ["data-call-state"],
  });
  document.addEventListener("visibilitychange", () => {
    const slot = document.querySelector(SELECTORS.slot);
    if (document.hidden && ringing.callId && slot) notifyIncoming(slot);
  });
  checkSlot();
}

// --- The call page ---------------------------------------------------------------------------

function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function iceConfig(ice) {
  // Only the two fields the server sends; the rest of the configuration is ours.
  const servers = Array.isArray(ice?.iceServers) ? ice.iceServers : [];
  return {
    iceServers: servers,
    iceTransportPolicy: ice?.iceTransportPolicy === "relay" ? "relay" : "all",
    bundlePolicy: "max-bundle",
  };
}

/** The ICE username fragment of a session description: new ones mean an ICE restart. */
function iceUfrag(description) {
  return description?.sdp?.match(/^a=ice-ufrag:(\S+)/m)?.[1] ?? null;
}

function audioConstraints(deviceId) {
  return {
    echoCancellation: true,
    noiseSuppression: true,
    ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
  };
}

function videoConstraints(deviceId) {
  return {
    width: { ideal: 1280 },
    height: { ideal: 720 },
    ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
  };
}

/** The call socket's address for a call. */
function callSocketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** One call, on this page: its socket, its connection and its media, and the call page's
 * element once there is one. An Accept starts it at the click, before the call page is there
 * (HeadStart): it signs in on the call socket, starts the camera and answers the caller's offer
 * then, and shows all of it when the call page is swapped in (attach). What it would show
 * before that is kept (the state, the status, a problem) and shown at attach. */
class CallPage {
  /** `renderedState`: the call's state when the server rendered the page (for an Accept's
   * head start, "active": it answers). */
  constructor({ callId, socket, videoCall, wantVideo, peerName, renderedState }) {
    this.root = null;
    this.el = {};
    this.callId = callId;
    this.peerName = peerName || "the other side";
    this.returnUrl = "/";
    this.slotUrl = null;
    this.socketUrl = callSocketUrl(socket);
    this.videoCall = videoCall;
    this.wantVideo = wantVideo;

    this.state = "connecting";
    this.stateShown = false; // setState has been called: attach shows this.state
    this.statusText = null;
    this.problem = null; // {kind, text, options}: what showProblem shows, kept for attach
    // What the server said when it rendered the page: a welcome saying "ringing" on a page
    // rendered after the answer comes from a socket opened before it (HeadStart).
    this.renderedState = renderedState;
    this.begun = false;
    this.over = false;
    // Signalling
    this.ws = null;
    this.socketAttempts = 0;
    this.seat = null;
    this.peer = null;
    this.polite = false;
    this.ice = iceConfig(null);
    this.pairKey = null;
    this.queue = Promise.resolve();
    // Peer connection and its negotiation flags (perfect negotiation)
    this.pc = null;
    // The connection is made at the welcome, before there is anyone to send its offer and
    // candidates to: they wait here until the first "ready" pairs it (onReady).
    this.unpaired = false;
    this.pending = [];
    this.neg = null;
    this.restartTimer = null;
    this.restartAttempt = 0;
    this.deadline = null;
    this.problemKind = null;
    // Media
    this.localStream = new MediaStream();
    this.remoteStream = new MediaStream();
    this.audioTrack = null;
    this.cameraTrack = null;
    this.screenTrack = null;
    this.muted = false;
    this.cameraOn = this.wantVideo;
    this.sharing = false;
    this.peerMedia = { muted: false, camera: true, sharing: false };
    this.peerAway = false;
    this.remoteFrames = false;
    this.retired = null;
    this.quality = null;
    this.connectedSince = null;
  }

  /** The page's own call, as the server rendered it. */
  static of(root) {
    return new CallPage({
      callId: root.dataset.callId,
      socket: root.dataset.socket,
      videoCall: root.dataset.kind !== "audio",
      wantVideo: CallPage.wantsVideo(root),
      peerName: root.dataset.peerName,
      renderedState: root.dataset.state,
    });
  }

  static wantsVideo(root) {
    return root.dataset.video === "1" && new URLSearchParams(location.search).get("audio") !== "1";
  }

  /** The call socket and the media: all that needs no element of the page. */
  begin() {
    this.begun = true;
    this.setStatus(TEXT.connecting(this.peerName));
    this.connect();
    this.media = this.startMedia({ video: this.wantVideo, audio: true });
    this.timers = [
      setInterval(() => this.tick(), 1000),
      setInterval(() => this.measure(), QUALITY_EVERY_MS),
    ];
    document.addEventListener("parley:call-slot", (event) => this.onSlot(event.detail.slot));
    addEventListener("pagehide", () => this.stopMedia());
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.fillDevices());
  }

  /** The call page's element is here (rendered with the page, or swapped in): show the call. */
  attach(root) {
    this.root = root;
    for (const [name, selector] of Object.entries(SELECTORS)) {
      this.el[name] = document.querySelector(selector);
    }
    this.peerName = root.dataset.peerName || this.peerName;
    this.videoCall = root.dataset.kind !== "audio";
    this.returnUrl = root.dataset.returnUrl || "/";
    this.slotUrl = root.dataset.slotUrl;
    window.parleyCall = this;
    this.loadChatLater();
    if (root.dataset.state === "ended") {
      this.quit(); // a head start for a call that ended meanwhile
      this.setStatus(TEXT.ended);
      return;
    }
    if (this.connectedSince === null) this.connectedSince = this.startedAt();
    const wantVideo = CallPage.wantsVideo(root);
    if (wantVideo !== this.wantVideo) {
      // Started for other media than this page wants: turn the camera on or off once the
      // media asked for at the start is there.
      this.wantVideo = wantVideo;
      this.media = this.media.then(() => {
        if (!this.over && this.cameraOn !== wantVideo) return this.toggleCamera();
      });
    }
    this.el.localVideo.srcObject = this.localStream;
    this.bindControls();
    // What happened before there was a page to show it.
    if (this.stateShown) root.dataset.state = this.state;
    if (this.statusText !== null) this.setStatus(this.statusText);
    if (this.problem) {
      const { kind, text, options } = this.problem;
      this.showProblem(kind, text, options);
    }
    if (this.pc || this.retired) this.showRemote();
    this.tick();
    this.renderControls();
    this.renderPeer();
    this.fillDevices();
    this.measure();
    if (this.over && this.state === "ended") this.goBackLater();
  }

  /** Stop everything, saying nothing: a head start nobody took, or a call page that came
   * for a call that is over. */
  quit() {
    this.over = true;
    for (const timer of this.timers ?? []) clearInterval(timer);
    this.closePeer();
    this.stopMedia();
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }

  /** The direct conversation beside the video is fetched (hx-get, with its own room socket)
   * while the call rings (the caller's page: nothing else is under way), else once the call
   * is up: its first remote frame, half a second after connecting (a call without video has
   * no frame), when the call is over, or after CHAT_AT_MOST_MS at the latest. Fetched with the
   * page, the conversation and its socket's handshake would queue on the server, and its swap
   * in this page's main thread, with the signalling and the first frame the person is waiting
   * for. (Holding the member socket back as well made no difference that could be measured.) */
  loadChatLater() {
    const chat = this.el.chat;
    if (!chat) return;
    let timers = [];
    let watching = null;
    const open = () => chat.dispatchEvent(new CustomEvent("parley:call-settled"));
    const load = () => {
      if (!timers) return;
      for (const timer of timers) clearTimeout(timer);
      timers = null;
      watching?.disconnect();
      // htmx listens for the trigger once it has processed the page, at DOMContentLoaded
      // (which comes after this module has run: a module script is deferred).
      if (pageProcessed) open();
      else document.addEventListener("DOMContentLoaded", open, { once: true });
    };
    const onState = () => {
      const state = this.root.dataset.state;
      if (state === "connected") timers?.push(setTimeout(load, CHAT_AFTER_CONNECTED_MS));
      // While it rings nothing else is under way: the caller's page loads it at once.
      else if (!["active", "connecting", "reconnecting"].includes(state)) load();
    };
    const video = this.el.remoteVideo;
    const framed = () => video.videoWidth > 0 && load();
    video?.addEventListener("loadeddata", framed);
    video?.addEventListener("resize", framed);
    watching = new MutationObserver(onState);
    watching.observe(this.root, { attributes: true, attributeFilter: ["data-state"] });
    timers.push(setTimeout(load, CHAT_AT_MOST_MS));
    onState();
  }

  startedAt() {
    const value = this.root.dataset.connectedAt || this.root.dataset.answeredAt;
    const time = value ? Date.parse(value) : NaN;
    return Number.isNaN(time) ? null : time;
  }

  // --- Words on the page ----------------------------------------------------------------------
  // Before the page is there (an Accept's head start) they are kept, and attach shows them.

  setState(state) {
    this.state = state;
    this.stateShown = true;
    if (this.root) this.root.dataset.state = state;
  }

  setStatus(text) {
    this.statusText = text;
    if (this.el.status) this.el.status.textContent = text;
  }

  showProblem(kind, text, options = {}) {
    const { retry = false, joinAudio = false, joinNone = false } = options;
    this.problemKind = kind;
    this.problem = { kind, text, options };
    if (!this.root) return;
    this.el.problemText.textContent = text;
    this.el.retry.hidden = !retry;
    this.el.joinAudio.hidden = !joinAudio;
    this.el.joinNone.hidden = !joinNone;
    this.el.problem.hidden = false;
    this.el.problem.dataset.kind = kind;
  }

  clearProblem(kind) {
    if (kind && this.problemKind !== kind) return;
    this.problemKind = null;
    this.problem = null;
    if (!this.root) return;
    this.el.problem.hidden = true;
    this.el.problemText.textContent = "";
    delete this.el.problem.dataset.kind;
  }

  tick() {
    if (this.root && this.connectedSince !== null && !this.over) {
      this.el.timer.textContent = formatDuration(Date.now() - this.connectedSince);
      this.el.timer.hidden = false;
    }
  }

  renderPeer() {
    if (!this.root) return;
    const pc = this.pc;
    const lost = pc && this.everConnected && ["disconnected", "failed"].includes(pc.connectionState);
    const parts = [];
    if (this.peerAway || lost) {
      parts.push("reconnecting …");
    } else {
      if (this.peerMedia.muted) parts.push("muted");
      if (this.peerMedia.sharing) parts.push("sharing their screen");
      else if (!this.peerMedia.camera && this.videoCall) parts.push("camera off");
    }
    this.el.peerState.textContent = parts.join(" · ");
    const showsVideo =
      (this.peerMedia.camera || this.peerMedia.sharing) && this.remoteStream.getVideoTracks().length;
    this.el.remote.dataset.video = showsVideo && this.remoteFrames ? "on" : "off";
    this.el.remote.dataset.away = this.peerAway || lost ? "1" : "0";
  }

  renderControls() {
    if (!this.root) return;
    const { mute, camera, share } = this.el;
    mute.disabled = !this.audioTrack;
    mute.setAttribute("aria-pressed", String(this.muted));
    mute.querySelector(".call__label").textContent = this.muted ? "Unmute" : "Mute";
    camera.setAttribute("aria-pressed", String(!this.cameraOn));
    camera.querySelector(".call__label").textContent = this.cameraOn ? "Camera off" : "Camera on";
    share.hidden = !navigator.mediaDevices?.getDisplayMedia;
    share.setAttribute("aria-pressed", String(this.sharing));
    share.querySelector(".call__label").textContent = this.sharing ? "Stop sharing" : "Share screen";
    const outgoing = this.outgoingVideo();
    this.el.local.dataset.video = outgoing ? "on" : "off";
    this.el.local.dataset.sharing = this.sharing ? "1" : "0";
  }

  // --- The call socket ------------------------------------------------------------------------

  connect() {
    if (this.over) return;
    // Coming back after a drop, this page asks for its seat again: the other page then sees
    // the same pair and both restart ICE on the connection they have (onReady).
    const url = new URL(this.socketUrl);
    if (this.seat) url.searchParams.set("seat", this.seat);
    const ws = new WebSocket(url.href);
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.socketAttempts = 0;
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || typeof message !== "object") return;
      // One message at a time, in order: the negotiation depends on it.
      this.queue = this.queue
        .then(() => this.handle(message))
        .catch((error) => console.warn("Parley call:", error));
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.onSocketClose(event.code, opened);
    });
  }

  send(frame) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async onSocketClose(code, opened) {
    if (this.over) return;
    if (code === 4005) return this.ended();
    if (code === 4004) return this.stop(TEXT.moved, "moved");
    if (code === 4001) return this.stop(TEXT.loggedOut, "logged-out");
    // Over the cap on open sockets (parley/live/sockets.py): said, and retried with the backoff.
    if (code === 4029) this.showProblem("crowded", TEXT.crowded);
    if (!opened && this.socketAttempts >= 2 && (await this.callIsOver())) return this.ended();
    const delay = SOCKET_BACKOFF_MS[Math.min(this.socketAttempts, SOCKET_BACKOFF_MS.length - 1)];
    this.socketAttempts += 1;
    setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
  }

  /** A socket that keeps being refused at the handshake may mean the call ended meanwhile:
   * the member's slot says. */
  async callIsOver() {
    if (!this.slotUrl) return false;
    try {
      const response = await fetch(this.slotUrl, { headers: { "HX-Request": "true" } });
      if (!response.ok) return false;
      const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
      const slot = parsed.querySelector(SELECTORS.slot);
      if (!slot) return false;
      const live = ["incoming", "outgoing", "active"].includes(slot.dataset.callState);
      return !live || (slot.dataset.callId && slot.dataset.callId !== this.callId);
    } catch {
      return false;
    }
  }

  onSlot(slot) {
    // The member socket says the call ended (it can be quicker than the call socket's close).
    if (this.over || slot.dataset.callState !== "ended") return;
    if (slot.dataset.callId && slot.dataset.callId !== this.callId) return;
    this.ended();
  }

  async handle(message) {
    if (this.over) return;
    switch (message.type) {
      case "welcome":
        return this.onWelcome(message);
      case "ready":
        return this.onReady(message);
      case "peer-away":
        this.peerAway = true;
        this.renderPeer();
        return;
      case "description":
        if (message.from !== this.peer) return;
        return this.onDescription(message.description);
      case "candidate":
        if (message.from !== this.peer) return;
        return this.onCandidate(message.candidate);
      case "state":
        if (message.from !== this.peer) return;
        return this.onPeerState(message);
      case "error":
        console.warn("Parley call: the server refused a frame:", message.message);
        return;
      default:
        return;
    }
  }

  onWelcome(message) {
    this.clearProblem("crowded");
    this.seat = String(message.seat);
    this.polite = message.polite === true;
    this.ice = iceConfig(message.ice);
    if (this.pc) {
      try {
        this.pc.setConfiguration(this.ice); // fresh TURN credentials for the restarts to come
      } catch (error) {
        console.warn("Parley call: could not update the ICE servers:", error);
      }
    }
    if (message.state === "ringing" && this.renderedState !== "active") {
      this.setState("ringing");
      this.setStatus(TEXT.ringing(this.peerName));
    }
    // Each side makes its connection here, before it is paired: the caller's while it rings,
    // with its offer and candidates ready when the callee arrives; the callee's while its
    // accept commits. The first "ready" pairs it and sends what waited (onReady).
    if (!this.pc) this.newPeer({ unpaired: true });
  }

  onReady(message) {
    const peer = String(message.peer);
    this.peerAway = false;
    // A seat is one page: after a reload or another tab on either side, both pages see a new
    // pair of seats, and both start a fresh connection (the old one keeps the picture until
    // the new one is up). The same pair again means a socket of one of them came back: ICE
    // restarts on the connection both still have.
    const pair = `${this.seat} ${peer}`;
    if (this.pc && this.unpaired && this.pc.connectionState !== "closed") {
      this.pairKey = pair;
      this.peer = peer;
      this.pair();
    } else if (!this.pc || pair !== this.pairKey || this.pc.connectionState === "closed") {
      this.pairKey = pair;
      this.peer = peer;
      this.newPeer();
    } else {
      this.resumeIce();
    }
    if (this.pc.connectionState === "connected") this.send({ type: "connected" });
    this.sendState();
    this.renderPeer();
  }

  // ICE restarts of this page's connection after a call socket came back (tests read it).
  iceRestarts = 0;

  /** The signalling path broke, so the media path may have too (a new network, a new address):
   * restart ICE, with the fresh TURN credentials the welcome brought. The impolite side asks
   * for it; the polite side answers the offer that brings it (both asking would only make the
   * offers collide). Counted once the connection has new ICE credentials of its own. */
  resumeIce() {
    const pc = this.pc;
    const before = iceUfrag(pc.localDescription);
    this.stopCountingRestart?.();
    if (before) {
      const counted = () => {
        const now = iceUfrag(pc.localDescription);
        if (pc.signalingState !== "stable" || !now || now === before) return;
        this.stopCountingRestart();
        if (pc === this.pc) this.iceRestarts += 1;
      };
      pc.addEventListener("signalingstatechange", counted);
      this.stopCountingRestart = () => {
        pc.removeEventListener("signalingstatechange", counted);
        this.stopCountingRestart = null;
      };
    }
    if (!this.polite) pc.restartIce();
  }

  // --- The peer connection --------------------------------------------------------------------

  /** A fresh connection. `unpaired`: made at the welcome, before there is a peer to send to;
   * what it has to send (the caller's offer, candidates) waits for the pairing. */
  newPeer({ unpaired = false } = {}) {
    const old = this.pc;
    this.closePeer({ keepPicture: old?.connectionState === "connected" });
    const pc = new RTCPeerConnection(this.ice);
    this.pc = pc;
    this.unpaired = unpaired;
    this.pending = [];
    this.neg = { makingOffer: false, ignoreOffer: false, settingAnswer: false };
    this.everConnected = false;
    this.restartAttempt = 0;
    this.turnRefused = false;
    this.relayGathered = false;
    this.remoteStream = new MediaStream();
    if (!this.retired) this.showRemote();
    if (!unpaired) this.connecting(pc);

    pc.addEventListener("track", ({ track }) => {
      if (pc !== this.pc) return;
      for (const old of this.remoteStream.getTracks()) {
        if (old.kind === track.kind) this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(track);
      if (!this.retired) this.showRemote();
      this.renderPeer();
    });
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (pc !== this.pc || !candidate) return;
      if (candidate.type === "relay") this.relayGathered = true;
      const frame = { type: "candidate", candidate: candidate.toJSON() };
      if (this.unpaired) this.pending.push(frame);
      else this.send(frame);
    });
    pc.addEventListener("icecandidateerror", (event) => {
      if (pc !== this.pc) return;
      if (event.errorCode === 401) this.turnRefused = true;
    });
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc !== this.pc || pc.iceGatheringState !== "complete") return;
      // Relay only, and no relay candidate: there is no way through, and waiting won't help.
      if (this.ice.iceTransportPolicy === "relay" && !this.relayGathered && !this.everConnected) {
        this.noPath();
      }
    });
    pc.addEventListener("connectionstatechange", () => this.onConnectionState(pc));
    pc.addEventListener("negotiationneeded", () => this.offer(pc));

    // The impolite side (the caller) makes the offer, with both kinds of media in it from the
    // start: camera off, screen share and device changes are then replaceTrack, never a new
    // negotiation. The polite side answers into these transceivers (attachTracks).
    // Its video starts at a quarter of the pixels (setScale).
    if (!this.polite) {
      pc.addTransceiver(this.audioTrack ?? "audio", { direction: "sendrecv" });
      pc.addTransceiver(this.outgoingVideo() ?? "video", {
        direction: "sendrecv",
        sendEncodings: [{ scaleResolutionDownBy: FIRST_SCALE }],
      });
      this.smallFrom = pc;
    }
    return pc;
  }

  /** The connection is this call's now: it has until the deadline to carry media. */
  connecting(pc) {
    this.setState("connecting");
    if (this.connectedSince === null) this.setStatus(TEXT.connecting(this.peerName));
    clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      if (pc === this.pc && !this.everConnected) this.noPath();
    }, CONNECT_DEADLINE_MS);
  }

  /** The first "ready" for the connection made while it rang: send what it has prepared. */
  pair() {
    const pc = this.pc;
    this.unpaired = false;
    this.connecting(pc);
    // An offer still being made is sent by offer() when it is done.
    if (!this.neg.makingOffer && pc.signalingState === "have-local-offer") {
      this.send({ type: "description", description: pc.localDescription.toJSON() });
    }
    for (const frame of this.pending.splice(0)) this.send(frame);
  }

  /** The first frames of a connection are sent at a quarter of the pixels, and the full picture
   * a moment after it connects: WebRTC starts a connection at a low estimated bandwidth, and
   * its encoder drops 720p frames (and scales down) before it sends the first one. The scale
   * keeps the picture's shape; the preview is the camera's own. */
  async setScale(pc, scale) {
    const sender = pc.getTransceivers().find(
      (t) => !t.stopped && t.receiver.track.kind === "video",
    )?.sender;
    if (!sender) return;
    try {
      const parameters = sender.getParameters();
      if (!parameters.encodings?.length) return;
      if (parameters.encodings.every((e) => (e.scaleResolutionDownBy ?? 1) === scale)) return;
      for (const encoding of parameters.encodings) encoding.scaleResolutionDownBy = scale;
      await sender.setParameters(parameters);
    } catch (error) {
      console.warn("Parley call: could not scale the outgoing video:", error);
    }
  }

  closePeer({ keepPicture = false } = {}) {
    clearTimeout(this.restartTimer);
    this.restartTimer = null;
    clearTimeout(this.deadline);
    this.dropRetired();
    if (this.pc && keepPicture) {
      // Make before break: the old connection may still carry media (only the socket
      // reconnected); it stays on screen until the new one connects, for a while at most.
      const retired = this.pc;
      this.retired = retired;
      setTimeout(() => this.retired === retired && this.dropRetired(), CONNECT_DEADLINE_MS);
    } else {
      this.pc?.close();
    }
    this.pc = null;
  }

  dropRetired() {
    this.retired?.close();
    this.retired = null;
    if (this.pc) this.showRemote();
  }

  showRemote() {
    const video = this.el.remoteVideo;
    if (!video) return; // attach shows it
    // Not before the other side's first track: a media element given a stream with nothing in
    // it delays the document's load event until data comes, so a page that is ringing would
    // never finish loading (the tab's spinner turning, and whatever waits for load waiting).
    if (!this.remoteStream.getTracks().length) return;
    if (video.srcObject !== this.remoteStream) {
      video.srcObject = this.remoteStream;
      this.remoteFrames = false;
    }
    this.playRemote();
  }

  noPath() {
    this.showProblem("path", this.turnRefused ? TEXT.turnRefused : TEXT.noPath);
  }

  async offer(pc) {
    if (pc !== this.pc) return;
    try {
      this.neg.makingOffer = true;
      await pc.setLocalDescription();
      if (pc === this.pc && !this.unpaired) {
        this.send({ type: "description", description: pc.localDescription.toJSON() });
      }
    } catch (error) {
      console.warn("Parley call: could not make an offer:", error);
    } finally {
      if (pc === this.pc) this.neg.makingOffer = false;
    }
  }

  async onDescription(description) {
    if (!description || !["offer", "answer"].includes(description.type)) return;
    if (typeof description.sdp !== "string") return;
    const pc = this.pc ?? this.newPeer();
    const neg = this.neg;
    const readyForOffer = !neg.makingOffer && (pc.signalingState === "stable" || neg.settingAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    neg.ignoreOffer = !this.polite && collision;
    if (neg.ignoreOffer) return;
    neg.settingAnswer = description.type === "answer";
    try {
      await pc.setRemoteDescription({ type: description.type, sdp: description.sdp });
    } finally {
      neg.settingAnswer = false;
    }
    if (description.type === "offer") {
      // Our tracks go on while the answer is made (both are on the connection's chain of
      // operations, in this order), and the answer goes out once made: the frames queued
      // behind it (the caller's candidates) wait for nothing else.
      const attached = this.attachTracks(pc);
      await pc.setLocalDescription();
      if (pc === this.pc) {
        this.send({ type: "description", description: pc.localDescription.toJSON() });
      }
      await attached;
      if (this.smallFrom !== pc) {
        this.smallFrom = pc; // the polite side's sender exists from the first offer on
        this.setScale(pc, FIRST_SCALE); // before it connects, with no frame waiting on it
      }
    }
  }

  async onCandidate(candidate) {
    const pc = this.pc;
    if (!pc || !candidate || typeof candidate.candidate !== "string") return;
    try {
      await pc.addIceCandidate({
        candidate: candidate.candidate,
        sdpMid: candidate.sdpMid ?? null,
        sdpMLineIndex: candidate.sdpMLineIndex ?? null,
        usernameFragment: candidate.usernameFragment ?? null,
      });
    } catch (error) {
      if (!this.neg.ignoreOffer) console.warn("Parley call: a candidate did not apply:", error);
    }
  }

  /** The polite side's transceivers come from the offer; send our tracks on them. Every
   * direction is set at once, for the answer made next; the tracks are replaced meanwhile. */
  attachTracks(pc) {
    const replaced = [];
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.stopped || transceiver.currentDirection === "stopped") continue;
      const kind = transceiver.receiver.track.kind;
      if (transceiver.direction !== "sendrecv") transceiver.direction = "sendrecv";
      const track = kind === "audio" ? this.audioTrack : this.outgoingVideo();
      if (transceiver.sender.track === track) continue;
      replaced.push(
        transceiver.sender.replaceTrack(track).catch((error) => {
          console.warn(`Parley call: could not send the ${kind} track:`, error);
        }),
      );
    }
    return Promise.all(replaced);
  }

  sender(kind) {
    return this.pc
      ?.getTransceivers()
      .find((t) => !t.stopped && t.receiver.track.kind === kind && t.direction === "sendrecv")
      ?.sender;
  }

  async sendTrack(kind, track) {
    const sender = this.sender(kind);
    if (sender && sender.track !== track) {
      try {
        await sender.replaceTrack(track);
      } catch (error) {
        console.warn(`Parley call: could not send the new ${kind} track:`, error);
      }
    }
  }

  onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this.everConnected = true;
      this.restartAttempt = 0;
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
      this.clearProblem("path");
      this.clearProblem("lost");
      this.dropRetired();
      this.setState("connected");
      this.setStatus(TEXT.connected);
      if (this.connectedSince === null) this.connectedSince = Date.now();
      this.tick();
      this.lastCounts = null; // loss is counted per connection
      this.measure();
      this.send({ type: "connected" });
      setTimeout(() => pc === this.pc && this.setScale(pc, 1), FULL_PICTURE_AFTER_MS);
    } else if (state === "disconnected" || state === "failed") {
      this.setState("reconnecting");
      this.setStatus(TEXT.reconnecting);
      if (state === "failed" && !this.everConnected) this.noPath();
      this.scheduleRestart(RESTART_GRACE_MS);
    }
    this.renderPeer();
  }

  /** ICE restart while the connection is not back: after a grace period, then with backoff.
   * The impolite side restarts; the polite side only if that did not help for a while. */
  scheduleRestart(delay) {
    if (this.restartTimer) return;
    const pc = this.pc;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (pc !== this.pc || this.over) return;
      if (["connected", "closed"].includes(pc.connectionState)) return;
      if (!this.polite || this.restartAttempt >= 1) pc.restartIce();
      if (this.everConnected && this.restartAttempt >= 2) {
        this.showProblem("lost", TEXT.lost(this.peerName));
      }
      const next = RESTART_BACKOFF_MS[Math.min(this.restartAttempt, RESTART_BACKOFF_MS.length - 1)];
      this.restartAttempt += 1;
      this.scheduleRestart(next);
    }, delay);
  }

  // --- Media ------------------------------------------------------------------------------

  outgoingVideo() {
    if (this.sharing && this.screenTrack) return this.screenTrack;
    return this.cameraOn ? this.cameraTrack : null;
  }

  async startMedia({ video, audio }) {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.showProblem("media", TEXT.insecure, { joinNone: true });
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: audio ? this.audioConstraints() : false,
        video: video ? this.videoConstraints() : false,
      });
      if (this.over) {
        for (const track of stream.getTracks()) track.stop(); // quit meanwhile
        return;
      }
      this.replaceLocal("audio", stream.getAudioTracks()[0] ?? null);
      if (video) {
        this.replaceLocal("video", stream.getVideoTracks()[0] ?? null);
        this.cameraOn = Boolean(this.cameraTrack);
      }
      this.clearProblem("media");
    } catch (error) {
      await this.mediaProblem(error, { video, audio });
    }
    await this.applyLocal();
    await this.fillDevices();
  }

  audioConstraints(deviceId) {
    return audioConstraints(deviceId);
  }

  videoConstraints(deviceId) {
    return videoConstraints(deviceId);
  }

  async mediaProblem(error, { video, audio }) {
    this.cameraOn = false;
    const name = error?.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      this.showProblem("media", TEXT.denied, { retry: true, joinAudio: video, joinNone: true });
    } else if (name === "NotFoundError" || name === "OverconstrainedError") {
      const devices = (await navigator.mediaDevices.enumerateDevices().catch(() => [])) || [];
      const hasMic = devices.some((d) => d.kind === "audioinput");
      const hasCamera = devices.some((d) => d.kind === "videoinput");
      if (audio && hasMic && video && !hasCamera) {
        this.showProblem("media", TEXT.noCamera, { joinAudio: true });
      } else if (audio && !hasMic && hasCamera && video) {
        this.showProblem("media", TEXT.noMicrophone, { joinNone: true });
        this.noMicVideoOnly = true;
      } else {
        this.showProblem("media", TEXT.noDevices, { retry: true, joinNone: true });
      }
    } else if (name === "NotReadableError" || name === "AbortError") {
      this.showProblem("media", TEXT.busyDevice, {
        retry: true,
        joinAudio: video,
        joinNone: true,
      });
    } else {
      this.showProblem("media", TEXT.otherMedia, { retry: true, joinAudio: video, joinNone: true });
    }
    this.lastMediaRequest = { video, audio };
  }

  replaceLocal(kind, track) {
    const old = kind === "audio" ? this.audioTrack : this.cameraTrack;
    if (old && old !== track) {
      old.stop();
      this.localStream.removeTrack(old);
    }
    if (kind === "audio") {
      this.audioTrack = track;
      if (track) track.enabled = !this.muted;
    } else {
      this.cameraTrack = track;
    }
  }

  /** Show our outgoing video in the preview and put every track on its sender. */
  async applyLocal() {
    for (const track of this.localStream.getTracks()) this.localStream.removeTrack(track);
    const video = this.outgoingVideo();
    if (video) this.localStream.addTrack(video);
    if (this.audioTrack) this.localStream.addTrack(this.audioTrack);
    await this.sendTrack("audio", this.audioTrack);
    await this.sendTrack("video", video);
    this.renderControls();
    this.sendState();
  }

  sendState() {
    if (!this.peer) return; // nobody to tell before the call is answered (and "ready" says so)
    this.send({
      type: "state",
      muted: this.muted || !this.audioTrack,
      camera: Boolean(this.cameraOn && this.cameraTrack),
      sharing: Boolean(this.sharing && this.screenTrack),
    });
  }

  onPeerState(message) {
    const flag = (value, fallback) => (typeof value === "boolean" ? value : fallback);
    this.peerMedia = {
      muted: flag(message.muted, this.peerMedia.muted),
      camera: flag(message.camera, this.peerMedia.camera),
      sharing: flag(message.sharing, this.peerMedia.sharing),
    };
    this.renderPeer();
  }

  playRemote() {
    const video = this.el.remoteVideo;
    if (!video.dataset.watched) {
      video.dataset.watched = "1";
      // A frame has arrived: the picture can replace the placeholder.
      const framed = () => {
        this.remoteFrames = video.videoWidth > 0;
        this.renderPeer();
      };
      video.addEventListener("resize", framed);
      video.addEventListener("loadeddata", framed);
      video.addEventListener("playing", () => {
        this.el.play.hidden = true;
      });
    }
    // Only the latest attempt counts: an earlier one may be refused after a later one worked.
    const attempt = (this.playAttempt = (this.playAttempt ?? 0) + 1);
    video.play().catch((error) => {
      // Sound may autoplay only after a click on this page: then a button asks for one.
      if (attempt === this.playAttempt && error?.name === "NotAllowedError" && video.paused) {
        this.el.play.hidden = false;
      }
    });
  }

  stopMedia() {
    for (const track of [this.audioTrack, this.cameraTrack, this.screenTrack]) track?.stop();
  }

  async fillDevices() {
    if (!this.root || !navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    this.fillSelect(this.el.mic, devices, "audioinput", this.audioTrack, "Microphone");
    this.fillSelect(this.el.camSelect, devices, "videoinput", this.cameraTrack, "Camera");
  }

  fillSelect(select, devices, kind, track, fallback) {
    const current = track?.getSettings().deviceId ?? select.value;
    const found = devices.filter((d) => d.kind === kind && d.deviceId);
    select.replaceChildren(
      ...found.map((device, index) => {
        const option = document.createElement("option");
        option.value = device.deviceId;
        option.textContent = device.label || `${fallback} ${index + 1}`;
        option.selected = device.deviceId === current;
        return option;
      }),
    );
    select.disabled = found.length === 0;
    select.closest(".call__device")?.toggleAttribute("data-empty", found.length === 0);
  }

  // --- Controls -------------------------------------------------------------------------------

  bindControls() {
    const { mute, camera, share, mic, camSelect, retry, joinAudio, joinNone, play } = this.el;
    mute.addEventListener("click", () => this.toggleMute());
    camera.addEventListener("click", () => this.toggleCamera());
    share.addEventListener("click", () => (this.sharing ? this.stopShare() : this.startShare()));
    mic.addEventListener("change", () => this.useMicrophone(mic.value));
    camSelect.addEventListener("change", () => this.useCamera(camSelect.value));
    retry.addEventListener("click", () => {
      this.clearProblem("media");
      this.media = this.startMedia(this.lastMediaRequest ?? { video: this.wantVideo, audio: true });
    });
    joinAudio.addEventListener("click", () => {
      this.clearProblem("media");
      this.media = this.startMedia({ video: false, audio: true });
    });
    joinNone.addEventListener("click", () => {
      this.clearProblem("media");
      if (this.noMicVideoOnly) this.media = this.startMedia({ video: true, audio: false });
    });
    play.addEventListener("click", () => this.playRemote());
  }

  toggleMute() {
    if (!this.audioTrack) return;
    this.muted = !this.muted;
    this.audioTrack.enabled = !this.muted;
    this.renderControls();
    this.sendState();
  }

  async toggleCamera() {
    if (this.cameraOn) {
      this.cameraOn = false;
      // Stop the camera itself (its light goes off), and send nothing in its place.
      this.replaceLocal("video", null);
      await this.applyLocal();
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: this.videoConstraints(this.el.camSelect.value || undefined),
      });
      this.replaceLocal("video", stream.getVideoTracks()[0]);
      this.cameraOn = true;
      this.clearProblem("media");
    } catch (error) {
      await this.mediaProblem(error, { video: true, audio: false });
    }
    await this.applyLocal();
  }

  async startShare() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (error) {
      if (error?.name !== "NotAllowedError") this.showProblem("share", TEXT.shareFailed);
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.contentHint = "detail";
    this.clearProblem("share");
    this.screenTrack = track;
    this.sharing = true;
    // The browser's own "Stop sharing" ends the track: back to the camera.
    track.addEventListener("ended", () => {
      if (this.screenTrack === track) this.stopShare();
    });
    await this.applyLocal();
  }

  async stopShare() {
    this.screenTrack?.stop();
    this.screenTrack = null;
    this.sharing = false;
    await this.applyLocal();
  }

  async useMicrophone(deviceId) {
    if (!deviceId || this.audioTrack?.getSettings().deviceId === deviceId) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: this.audioConstraints(deviceId),
      });
      this.replaceLocal("audio", stream.getAudioTracks()[0]);
      this.clearProblem("media");
    } catch (error) {
      await this.mediaProblem(error, { video: false, audio: true });
    }
    await this.applyLocal();
  }

  async useCamera(deviceId) {
    if (!deviceId || !this.cameraOn || this.cameraTrack?.getSettings().deviceId === deviceId) {
      return; // with the camera off, the choice applies when it is turned on
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: this.videoConstraints(deviceId),
      });
      this.replaceLocal("video", stream.getVideoTracks()[0]);
    } catch (error) {
      await this.mediaProblem(error, { video: true, audio: false });
    }
    await this.applyLocal();
  }

  // --- Quality ----------------------------------------------------------------------------

  async measure() {
    const pc = this.pc;
    if (!this.root) return;
    if (!pc || pc.connectionState !== "connected") {
      this.el.quality.hidden = true;
      return;
    }
    const stats = await pc.getStats();
    let pairId = null;
    let lost = 0;
    let received = 0;
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) {
        pairId = report.selectedCandidatePairId;
      } else if (report.type === "inbound-rtp") {
        lost += report.packetsLost ?? 0;
        received += report.packetsReceived ?? 0;
      }
    });
    const pair = pairId ? stats.get(pairId) : null;
    const rtt = pair?.currentRoundTripTime;
    const before = this.lastCounts ?? { lost: 0, received: 0 };
    this.lastCounts = { lost, received };
    const newLost = Math.max(0, lost - before.lost);
    const newReceived = Math.max(0, received - before.received);
    const loss = newLost + newReceived ? newLost / (newLost + newReceived) : 0;
    const ms = typeof rtt === "number" ? Math.round(rtt * 1000) : null;
    let level = "good";
    if ((ms ?? 0) > 400 || loss > 0.08) level = "poor";
    else if ((ms ?? 0) > 150 || loss > 0.02) level = "fair";
    this.quality = { rtt: ms, loss, level };
    const words = { good: "Good connection", fair: "Fair connection", poor: "Poor connection" };
    const detail = [ms === null ? null : `${ms} ms`, `${Math.round(loss * 100)}% loss`];
    this.el.quality.textContent = [words[level], ...detail.filter(Boolean)].join(" · ");
    this.el.quality.dataset.level = level;
    this.el.quality.hidden = false;
  }

  // --- The end --------------------------------------------------------------------------------

  stop(text, state) {
    this.over = true;
    this.setState(state);
    this.closePeer();
    this.stopMedia();
    if (this.el.quality) this.el.quality.hidden = true;
    this.setStatus(text);
    this.showProblem(state, text);
    this.ws?.close();
    this.ws = null;
  }

  ended() {
    if (this.over) return;
    this.stop(TEXT.ended, "ended");
    if (this.root) this.goBackLater(); // else at attach, which knows where to
  }

  goBackLater() {
    setTimeout(() => location.assign(this.returnUrl), RETURN_AFTER_MS);
  }
}

// --- Answering in place ----------------------------------------------------------------------

/** What an Accept starts at the click, while its request goes to the server: the call itself
 * (a CallPage without its element yet). It starts the camera and microphone and opens the call
 * socket (the server seats a participant while the call rings, and says `ready` once the
 * accept has committed); it makes the connection at the socket's welcome, and answers the
 * caller's offer as soon as it comes, with its candidates after it. With htmx the accept's answer is the call
 * page's content, swapped in here (calls/views.py call_accept): the CallPage is attached to it,
 * with its call well under way by then. Refused, failed or not taken soon: it quits. */
class HeadStart {
  static current = null;

  constructor(slot, video) {
    HeadStart.current?.abandon();
    HeadStart.current = this;
    const callId = slot.dataset.callId;
    this.callId = callId;
    this.page = new CallPage({
      callId,
      socket: `/ws/calls/${encodeURIComponent(callId)}/`,
      videoCall: video || slot.querySelector("[data-call-answer='video']") !== null,
      wantVideo: video,
      peerName: slot.dataset.callerName,
      renderedState: "active", // it answers: a welcome saying "ringing" is from before that
    });
    this.page.begin();
    this.timer = setTimeout(() => this.abandon(), HEAD_START_MS);
  }

  abandon() {
    clearTimeout(this.timer);
    if (HeadStart.current === this) HeadStart.current = null;
    if (!this.page.root) this.page.quit();
  }

  /** The call page for `callId` is here: its CallPage, if an Accept started it. */
  static take(callId) {
    const early = HeadStart.current;
    if (!early || early.callId !== callId) return null;
    clearTimeout(early.timer);
    HeadStart.current = null;
    return early.page;
  }
}

function watchAnswers() {
  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    const slot = form?.closest?.(SELECTORS.slot);
    if (!slot || !form.matches("[data-call-answer]") || !slot.dataset.callId) return;
    new HeadStart(slot, form.dataset.callAnswer === "video");
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    const early = HeadStart.current;
    if (!early || !event.detail.elt?.matches?.("[data-call-answer]")) return;
    // Swapped in by now when it worked (the swap settles at once: its hx-swap says settle:0ms).
    queueMicrotask(() => {
      if (HeadStart.current === early && !event.detail.successful) early.abandon();
    });
  });
}

// --- Start -----------------------------------------------------------------------------------

// htmx processes the page in its own DOMContentLoaded listener, added before this module ran.
let pageProcessed = false;
document.addEventListener("DOMContentLoaded", () => (pageProcessed = true), { once: true });

/** The call page, at load or swapped in by an Accept (then its address goes into the history,
 * and back or forward from it load their pages whole, as without the swap). */
function startCallPage() {
  const root = document.querySelector(SELECTORS.call);
  const current = window.parleyCall;
  if (!root || current?.root === root) return;
  if (current && !current.over) {
    location.reload(); // a second call page in one document: let the server say what it is
    return;
  }
  const swapped = pageProcessed;
  let page = HeadStart.take(root.dataset.callId);
  if (!page) {
    page = CallPage.of(root);
    if (root.dataset.state !== "ended") page.begin();
  }
  page.attach(root);
  if (!swapped) return;
  const url = new URL(`/calls/${encodeURIComponent(root.dataset.callId)}/`, location.href);
  if (root.dataset.kind === "video" && root.dataset.video === "0") url.search = "?audio=1";
  if (url.href !== location.href) history.pushState({ parleyCall: root.dataset.callId }, "", url);
  swappedIn = true;
}

let swappedIn = false;
// Back or forward from a swapped-in call page, or (in the document a back loaded) forward to
// the entry it pushed, which the browser treats as the same document: load it whole.
addEventListener("popstate", (event) => {
  if (swappedIn || event.state?.parleyCall) location.reload();
});

watchSlot();
watchAnswers();
startCallPage();
