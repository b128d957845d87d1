"""Parser micro-benchmark: messages per second on one core.

Two workloads per message, each on the same bytes again and again:
- read: parse, read every header a proxy routes on, serialize unchanged;
- forward: the same plus what a proxy does before sending on (push a Via, decrement
  Max-Forwards, add Record-Route), then serialize the changed message.
The parser keeps what the texts of From, To, Via, CSeq and URIs gave lately
(`sipgrid.sip.uri.remembered`), so these find every value already parsed: an upper
bound. A third workload reads the messages of calls as a proxy sees them (INVITE, ACK,
INVITE with credentials, 180, 200, ACK, BYE, 200), each call with its own Call-ID, tags
and branches, none seen before: what the memo gives in a call, and no more.
Figures go to bench/results/parser.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from sipgrid.sip import Request, Response, parse

RESULTS = Path(__file__).resolve().parent / "results" / "parser.json"

SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:1002@sip.local SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bK-524287-1---7a9e0b2c2f1d3e4a\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:1001@sip.local>;tag=9fxced76sl\r\n'
    "To: <sip:1002@sip.local>\r\n"
    "Call-ID: 3848276298220188511@192.0.2.10\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.10:5062;transport=udp>\r\n"
    'Proxy-Authorization: Digest username="1001", realm="sip.local", nonce="abcdef0123456789", '
    'uri="sip:1002@sip.local", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
    'qop=auth, nc=00000001, cnonce="0a4f113b"\r\n'
    "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    "Supported: replaces, norefersub\r\n"
    "User-Agent: Zoiper rv2.10.19.4\r\n"
    "Allow-Events: presence, kpml, talk\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n" + SDP
).encode()

REGISTER_OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;rport=5062;received=192.0.2.10;branch=z9hG4bK-524287-1---reg1\r\n"
    b"From: <sip:1001@sip.local>;tag=3f9a1b2c\r\n"
    b"To: <sip:1001@sip.local>;tag=a6c85cf\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n"
    b"CSeq: 3 REGISTER\r\n"
    b"Contact: <sip:1001@192.0.2.10:5062;transport=udp>;expires=3600\r\n"
    b"Date: Sat, 28 Nov 2026 06:00:00 GMT\r\n"
    b"Server: sipgrid\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def read(data: bytes) -> bytes:
    m = parse(data)
    m.top_via.branch  # noqa: B018
    m.from_.tag  # noqa: B018
    m.to.tag  # noqa: B018
    m.call_id  # noqa: B018
    m.cseq  # noqa: B018
    m.max_forwards  # noqa: B018
    m.routes  # noqa: B018
    m.contacts  # noqa: B018
    if isinstance(m, Request):
        m.uri  # noqa: B018
    return m.serialize()


def forward(data: bytes) -> bytes:
    m = parse(data)
    m.from_.tag  # noqa: B018
    m.to.tag  # noqa: B018
    m.call_id  # noqa: B018
    m.contacts  # noqa: B018
    if isinstance(m, Response):
        m.pop_first_value("Via")
        return m.serialize()
    m.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{m.top_via.branch}", first=True)
    m.set("Max-Forwards", (m.max_forwards or 70) - 1)
    m.add("Record-Route", "<sip:192.0.2.1:5060;lr>", first=True)
    return m.serialize()


def call_messages(n: int) -> list[bytes]:
    """The messages of call ``n`` that a proxy between sipp's caller and callee reads."""
    call_id, from_tag, to_tag = f"{n}-7781@192.0.2.10", f"{n}SIPpTag00", f"{n}SIPpTag01"
    record_route = "Record-Route: <sip:192.0.2.1:5060;lr>\r\n"
    route = "Route: <sip:192.0.2.1:5060;lr>\r\n"
    credentials = INVITE.split(b"Proxy-Authorization: ")[1].split(b"\r\n")[0].decode()

    def request(
        method: str, uri: str, branch: str, seq: int, tag: str = "", extra: str = ""
    ) -> bytes:
        body = SDP if method == "INVITE" else ""
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bK-{n}-{branch}\r\n"
            f'From: "Alice" <sip:1001@sip.local>;tag={from_tag}\r\n'
            f"To: <sip:1002@sip.local>{tag and ';tag=' + tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {seq} {method}\r\n"
            f"Contact: <sip:1001@192.0.2.10:5062;transport=udp>\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def response(status: str, branch: str, seq: int, method: str) -> bytes:
        body = SDP if status == "200 OK" and method == "INVITE" else ""
        return (
            f"SIP/2.0 {status}\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsg{n}{branch}\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5062;rport=5062;received=192.0.2.10;branch=z9hG4bK-{n}-{branch}\r\n"
            f'From: "Alice" <sip:1001@sip.local>;tag={from_tag}\r\n'
            f"To: <sip:1002@sip.local>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n"
            f"{record_route if method == 'INVITE' else ''}"
            f"Contact: <sip:1002@192.0.2.20:5062>\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    return [
        request("INVITE", "sip:1002@sip.local", "1", 1),
        request("ACK", "sip:1002@sip.local", "1", 1, "x"),
        request(
            "INVITE", "sip:1002@sip.local", "2", 2, extra=f"Proxy-Authorization: {credentials}\r\n"
        ),
        response("180 Ringing", "2", 2, "INVITE"),
        response("200 OK", "2", 2, "INVITE"),
        request("ACK", "sip:1002@192.0.2.20:5062", "3", 2, to_tag, route),
        request("BYE", "sip:1002@192.0.2.20:5062", "4", 3, to_tag, route),
        response("200 OK", "4", 3, "BYE"),
    ]


def measure_calls(calls: int = 5000, rounds: int = 3) -> float:
    """Best-of-rounds messages per second, reading (``read``) the messages of ``calls``
    calls never seen before in each round."""
    best = 0.0
    for r in range(rounds):
        messages = [m for n in range(calls) for m in call_messages(r * calls + n)]
        start = time.perf_counter()
        for data in messages:
            read(data)
        best = max(best, len(messages) / (time.perf_counter() - start))
    return best


def measure(
    fn: Callable[[bytes], bytes], data: bytes, seconds: float = 3.0, rounds: int = 10
) -> float:
    """Best-of-rounds messages per second."""
    fn(data)
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(200):
                fn(data)
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    results = {
        "invite_read": measure(read, INVITE),
        "invite_forward": measure(forward, INVITE),
        "register_200_read": measure(read, REGISTER_OK),
        "register_200_forward": measure(forward, REGISTER_OK),
        "call_messages_read": measure_calls(),
    }
    report = {
        "unit": "messages per second, one core, best of 10 rounds (of 3 for call_messages_read)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "invite_bytes": len(INVITE),
        "invite_headers": INVITE.split(b"\r\n\r\n")[0].count(b"\r\n"),
        **{k: round(v) for k, v in results.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:24s} {value:>10,.0f} msg/s")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
