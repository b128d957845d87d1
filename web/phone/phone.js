// The sipgrid browser phone: JsSIP over WSS with an X-Connect-Token instead of a
// password. window.phone holds what a test (or a curious person) may want to read.
"use strict";

const $ = (id) => document.getElementById(id);
const phone = (window.phone = { state: "idle", log: [], localSdp: "", remoteSdp: "" });
let ua = null;
let session = null;

function show(state, detail) {
  phone.state = state;
  const text = detail ? `${state}: ${detail}` : state;
  phone.log.push(text);
  $("state").textContent = text;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (error) {
    return null;
  }
}

function tokenHeaders() {
  return [`X-Connect-Token: ${$("token").value.trim()}`];
}

function follow(current) {
  session = current;
  current.on("sdp", (e) => {
    if (e.originator === "remote") phone.remoteSdp = e.sdp;
    else phone.localSdp = e.sdp;
  });
  current.on("progress", () => show("ringing"));
  current.on("confirmed", () => show("in call"));
  current.on("ended", (e) => show("ended", e.cause));
  current.on("failed", (e) => show("failed", e.cause));
  current.on("peerconnection", (e) => {
    e.peerconnection.addEventListener("track", (t) => {
      $("remote").srcObject = t.streams[0];
    });
  });
}

// RTP packets the browser received and sent in this call (from WebRTC's own counters)
phone.stats = async () => {
  const counts = { received: 0, sent: 0 };
  if (!session || !session.connection) return counts;
  (await session.connection.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp") counts.received += report.packetsReceived || 0;
    if (report.type === "outbound-rtp") counts.sent += report.packetsSent || 0;
  });
  return counts;
};

$("server").value = `wss://${location.host}/`;
$("token").addEventListener("input", () => {
  const found = claims($("token").value.trim());
  if (found && found.aor) $("aor").value = found.aor;
});

$("register").onclick = () => {
  if (ua) ua.stop();
  ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface($("server").value)],
    uri: $("aor").value.trim(),
    register: false,
    session_timers: false,
    user_agent: "sipgrid-browser-phone",
  });
  ua.registrator().setExtraHeaders(tokenHeaders());
  ua.on("connected", () => ua.register());
  ua.on("disconnected", () => show("disconnected"));
  ua.on("registered", () => show("registered"));
  ua.on("registrationFailed", (e) =>
    show("refused", (e.response && e.response.reason_phrase) || e.cause),
  );
  ua.on("newRTCSession", (e) => {
    if (e.originator !== "remote") return;
    follow(e.session);
    $("answer").disabled = false;
    show("incoming", e.request.from.uri.toString());
    if (new URLSearchParams(location.search).has("autoanswer")) $("answer").click();
  });
  show("registering");
  ua.start();
};

$("call").onclick = () => {
  if (!ua) return show("register first");
  show("calling", $("target").value);
  follow(
    ua.call($("target").value.trim(), {
      extraHeaders: tokenHeaders(),
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    }),
  );
};

$("answer").onclick = () => {
  $("answer").disabled = true;
  if (session) session.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
};

$("hangup").onclick = () => {
  if (session && !session.isEnded()) session.terminate();
};
