"""The RTPRelay middleware against Debian's rtpengine (userspace, on loopback): the SDP
each side receives, and no session left behind on any way a call can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgrid.api.types import (
    META_TARGET_TRANSPORT,
    MessageRequest,
    NetInterface,
    Transport,
)
from sipgrid.config import ConfigError
from sipgrid.services.rtprelay.ng import NgClient, NgError, bdecode, bencode
from sipgrid.services.rtprelay.relay import RtpRelay, relay_from
from sipgrid.services.settings import Settings
from sipgrid.sip import Request, Response, parse
from tests.e2e.harness import Rtpengine, free_port, rtpengine

WEB = NetInterface("127.0.0.1", 9001, Transport.WSS)
PHONE = NetInterface("127.0.0.1", 7002, Transport.UDP)
US = NetInterface("127.0.0.1", 5060, Transport.UDP)

PLAIN_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)

# what a browser sends once its candidates are gathered (JsSIP waits for them): ICE,
# DTLS-SRTP, rtcp-mux
WEB_SDP = (
    "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 45001 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 127.0.0.1\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2122260223 127.0.0.1 45001 typ host generation 0\r\n"
    "a=ice-ufrag:Ab12\r\na=ice-pwd:asd88fgpdd777uzjYhagZg1234567890\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:"
    "DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rtpengine]:
    with rtpengine(tmp_path_factory.mktemp("rtpengine")) as running:
        yield running


def invite(call_id: str, *, callee: str = "sip:1002@127.0.0.1:7002", via: str = "WSS") -> str:
    host = "abc.invalid" if via.startswith("WS") else "127.0.0.1:7001"
    sdp = WEB_SDP if via.startswith("WS") else PLAIN_SDP
    return (
        f"INVITE {callee} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKus{call_id}\r\n"
        f"Via: SIP/2.0/{via} {host};branch=z9hG4bKc{call_id}\r\n"
        f"From: <sip:web1@sip.local>;tag=ft-{call_id}\r\nTo: <sip:1002@sip.local>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\n"
        "Contact: <sip:x7@abc.invalid;transport=ws>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    )


def answer(call_id: str, status: int = 200, *, via: str = "WSS", sdp: str = PLAIN_SDP) -> str:
    """The callee's answer, on its way back to the caller (our own Via taken off)."""
    host = "abc.invalid" if via.startswith("WS") else "127.0.0.1:7001"
    body = sdp if status < 300 else ""
    kind = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"SIP/2.0 {status} Whatever\r\n"
        f"Via: SIP/2.0/{via} {host};branch=z9hG4bKc{call_id}\r\n"
        f"From: <sip:web1@sip.local>;tag=ft-{call_id}\r\nTo: <sip:1002@sip.local>;tag=tt\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1002@127.0.0.1:7002>\r\n"
        f"{kind}Content-Length: {len(body)}\r\n\r\n{body}"
    )


def in_dialog(method: str, call_id: str) -> str:
    return (
        f"{method} sip:1002@127.0.0.1:7002 SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK{method}{call_id}\r\n"
        f"From: <sip:web1@sip.local>;tag=ft-{call_id}\r\nTo: <sip:1002@sip.local>;tag=tt\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 {method}\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    )


def through(
    relay: RtpRelay, text: str, sender: NetInterface, target: str = ""
) -> Request | Response:
    message = parse(text.encode())
    request = MessageRequest(
        ref="r",
        edge_port_ref="ep",
        method=message.method if isinstance(message, Request) else message.cseq.method,
        sender=sender,
        listening_points=[US],
        message=message,
        metadata={META_TARGET_TRANSPORT: target} if target else {},
    )
    return asyncio.run(relay.process_message(request)).message


def known(engine: Rtpengine, call_id: str) -> bool:
    async def ask() -> bool:
        client = NgClient("127.0.0.1", engine.ng_port)
        try:
            await client.command("query", **{"call-id": call_id})
        except NgError:
            return False
        finally:
            client.close()
        return True

    return asyncio.run(ask())


def relay_for(engine: Rtpengine) -> RtpRelay:
    relay = relay_from(Settings.load(engine.env))
    assert relay is not None
    return relay


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "flags": ["trust-address"], "n": 7, "sdp": b"v=0\r\n"}
    assert bdecode(bencode(value)) == {
        b"command": b"offer",
        b"flags": [b"trust-address"],
        b"n": 7,
        b"sdp": b"v=0\r\n",
    }
    assert bencode({"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"  # keys sorted
    with pytest.raises(ValueError, match="truncated"):
        bdecode(b"5:abc")


def test_a_browser_calls_a_phone_each_side_gets_what_it_can_read(engine: Rtpengine) -> None:
    relay = relay_for(engine)
    offer = through(relay, invite("wp1"), WEB, target="UDP")
    assert isinstance(offer, Request)
    sdp = offer.body.decode()
    assert "RTP/AVP" in sdp and "a=ice-" not in sdp and "fingerprint" not in sdp
    assert "c=IN IP4 127.0.0.1" in sdp and "m=audio 45001" not in sdp  # rtpengine's port
    assert offer.get("Content-Length") == str(len(offer.body))
    back = through(relay, answer("wp1"), PHONE)
    assert isinstance(back, Response) and back.status == 200
    web_sdp = back.body.decode()
    assert "UDP/TLS/RTP/SAVPF" in web_sdp and "a=ice-ufrag" in web_sdp
    assert "a=fingerprint" in web_sdp and "a=rtcp-mux" in web_sdp
    assert known(engine, "wp1")
    through(relay, in_dialog("BYE", "wp1"), WEB, target="UDP")
    assert not known(engine, "wp1")


def test_a_phone_calling_a_browser_gets_ice_and_dtls_offered(engine: Rtpengine) -> None:
    relay = relay_for(engine)
    # no Dispatcher hint: the Request-URI (a WebSocket client's contact) says web
    offer = through(
        relay, invite("pw1", callee="sip:x7@abc.invalid;transport=ws", via="UDP"), PHONE
    )
    assert isinstance(offer, Request)
    assert "UDP/TLS/RTP/SAVPF" in offer.body.decode() and "a=ice-ufrag" in offer.body.decode()
    back = through(relay, answer("pw1", via="UDP", sdp=WEB_SDP.replace("actpass", "active")), WEB)
    assert isinstance(back, Response) and "RTP/AVP" in back.body.decode()
    through(relay, in_dialog("BYE", "pw1"), PHONE)
    assert not known(engine, "pw1")


@pytest.mark.parametrize("ending", ["486", "487-after-cancel", "cancel"])
def test_a_call_that_never_comes_up_leaves_nothing_in_rtpengine(
    engine: Rtpengine, ending: str
) -> None:
    relay = relay_for(engine)
    call_id = f"fail-{ending}"
    through(relay, invite(call_id), WEB, target="UDP")
    assert known(engine, call_id)
    if ending == "486":
        through(relay, answer(call_id, 486), PHONE)
    elif ending == "487-after-cancel":
        through(relay, answer(call_id, 183), PHONE)  # early media first
        through(relay, answer(call_id, 487), PHONE)
    else:
        through(relay, in_dialog("CANCEL", call_id).replace("2 CANCEL", "1 CANCEL"), WEB)
    assert not known(engine, call_id)


def test_rtpengine_away_gives_the_caller_500_with_a_reason() -> None:
    env = {"RTPENGINE_HOST": "127.0.0.1", "RTPENGINE_PORT": str(free_port())}
    relay = relay_from(Settings.load(env))
    assert relay is not None
    refused = through(relay, invite("gone1"), WEB, target="UDP")
    assert isinstance(refused, Response) and refused.status == 500
    assert refused.reason.startswith("Server Internal Error (Media Relay: ")
    # an answer for a call this relay never offered passes untouched
    broken = through(relay, answer("gone2"), PHONE)
    assert isinstance(broken, Response) and broken.status == 200  # no call of ours: untouched


def test_relay_settings_are_checked() -> None:
    assert relay_from(Settings.load({})) is None
    with pytest.raises(ConfigError, match="RTPENGINE_HOST: not set"):
        relay_from(Settings.load({}), required=True)
    with pytest.raises(ConfigError, match="RTPENGINE_PORT: Input should be a valid integer"):
        Settings.load({"RTPENGINE_HOST": "127.0.0.1", "RTPENGINE_PORT": "x"})


def test_rtpengine_failing_an_answer_leaves_nothing(engine: Rtpengine, tmp_path: Path) -> None:
    """rtpengine refuses an answer whose SDP it cannot read: the caller gets a 500 and
    the session is deleted."""
    relay = relay_for(engine)
    through(relay, invite("bad1"), WEB, target="UDP")
    broken = through(relay, answer("bad1", sdp="garbage\r\n"), PHONE)
    assert isinstance(broken, Response) and broken.status == 500 and not broken.body
    assert not known(engine, "bad1")
