// A WebSocket SIP phone that no one here wrote: JsSIP (npm) under Node.js over the `ws`
// package, driven by tests/e2e/test_websocket.py. Node has no WebRTC, so a minimal
// stand-in for RTCPeerConnection hands JsSIP a fixed audio SDP: the SIP side (REGISTER
// with digest, INVITE, 407, ACK, BYE, the .invalid Via and Contact of RFC 7118) is all
// JsSIP's own. Prints one JSON line per event; exits 0 when the scenario went through.
//
//   node ws_phone.js URL USER PASSWORD DOMAIN register|call TARGET|answer|message TARGET
//
// With CONNECT_TOKEN set, it registers and calls with that X-Connect-Token instead of a
// password (a browser phone's way).

'use strict';

const WebSocket = require('ws');

const [url, user, password, domain, mode, target] = process.argv.slice(2);
const token = process.env.CONNECT_TOKEN || '';
const tokenHeaders = token ? [`X-Connect-Token: ${token}`] : [];

class SipWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { rejectUnauthorized: false }); // the test's self-signed WSS
  }
}

const SDP = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
  'm=audio 9 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', '',
].join('\r\n');

class RTCSessionDescription {
  constructor({ type, sdp }) { this.type = type; this.sdp = sdp; }
}

class RTCPeerConnection {
  constructor() {
    this.iceGatheringState = 'complete';
    this.iceConnectionState = 'connected';
    this.signalingState = 'stable';
    this.localDescription = null;
    this.remoteDescription = null;
  }
  addEventListener() {}
  removeEventListener() {}
  getSenders() { return []; }
  getReceivers() { return []; }
  addTrack() {}
  close() { this.signalingState = 'closed'; }
  async createOffer() { return new RTCSessionDescription({ type: 'offer', sdp: SDP }); }
  async createAnswer() { return new RTCSessionDescription({ type: 'answer', sdp: SDP }); }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; }
}

global.window = global;
global.WebSocket = SipWebSocket;
global.RTCPeerConnection = RTCPeerConnection;
global.RTCSessionDescription = RTCSessionDescription;

const JsSIP = require('jssip');

function say(event, extra = {}) {
  process.stdout.write(JSON.stringify({ event, ...extra }) + '\n');
}

function finish(code) {
  try { ua.stop(); } catch (e) { /* stopping anyway */ }
  setTimeout(() => process.exit(code), 300);
}

const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: `sip:${user}@${domain}`,
  password: token ? undefined : password,
  register: !token,
  register_expires: 120,
  session_timers: false,
  user_agent: 'JsSIP-under-Node',
});

setTimeout(() => { say('timeout'); finish(3); }, 20000);

ua.on('registrationFailed', (e) => {
  say('registrationFailed', { cause: e.cause, reason: e.response && e.response.reason_phrase });
  finish(2);
});

if (token) {
  ua.registrator().setExtraHeaders(tokenHeaders);
  ua.on('connected', () => ua.register());
}

ua.on('registered', () => {
  say('registered');
  if (mode === 'register') {
    finish(0);
  } else if (mode === 'call') {
    const session = ua.call(`sip:${target}@${domain}`, {
      mediaConstraints: { audio: false, video: false },
      pcConfig: { iceServers: [] },
      extraHeaders: tokenHeaders,
    });
    session.on('progress', (e) => say('progress', { status: e.response && e.response.status_code }));
    session.on('failed', (e) => { say('failed', { cause: e.cause }); finish(1); });
    session.on('confirmed', () => {
      const rr = session._dialog && session._dialog._route_set;
      say('confirmed', { route_set: (rr || []).map(String) });
      setTimeout(() => session.terminate(), 300);
    });
    session.on('ended', (e) => { say('ended', { originator: e.originator }); finish(0); });
  } else if (mode === 'message') {
    ua.sendMessage(`sip:${target}@${domain}`, 'hello over a WebSocket', {
      eventHandlers: {
        succeeded: () => { say('delivered'); finish(0); },
        failed: (e) => { say('failed', { cause: e.cause }); finish(1); },
      },
    });
  } else if (mode === 'answer') {
    say('ready'); // the test starts the caller now
  }
});

ua.on('newRTCSession', ({ session, originator, request }) => {
  if (originator !== 'remote') return;
  say('incoming', { from: request.from.uri.toString(), via: request.getHeader('Via') });
  session.on('failed', (e) => { say('failed', { cause: e.cause }); finish(1); });
  session.on('ended', (e) => { say('ended', { originator: e.originator }); finish(0); });
  setTimeout(() => session.answer({ mediaConstraints: { audio: false, video: false } }), 100);
});

ua.start();
