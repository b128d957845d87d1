"""WebRTC end to end: a real browser (Debian's Chromium under playwright-core, fake
audio) opens sipgrid's browser phone page over HTTPS, registers over WSS with an
X-Connect-Token, and calls a sipp phone on UDP through rtpengine. The browser must get
ICE and DTLS-SRTP, the phone plain RTP/AVP, and RTP must flow both ways: the phone
echoes what reaches it, and the browser counts what comes back.

JsSIP under Node (tests/node/ws_phone.js) shows the token over plain WS too."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from sipgrid.pb import verifier_pb2, verifier_pb2_grpc
from sipgrid.sdk import create_token
from sipgrid.services.connect.tokens import PRIVATE_KEY_FILE
from sipgrid.services.rtprelay.ng import NgClient

from . import scenarios
from .harness import (
    ROOT,
    Rtpengine,
    Sipgrid,
    all_in_one,
    distributed,
    register_agent,
    rtpengine,
    sipp_server,
)

NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None or not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node and tests/node/node_modules are missing: run `make test`", pytrace=False)
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: run `make test`", pytrace=False)
    if not (ROOT / "web" / "build" / "jssip.min.js").is_file():
        pytest.fail("web/build/jssip.min.js is missing: run `make test`", pytrace=False)
    return path


@pytest.fixture
def media(tmp_path: Path) -> Iterator[tuple[Sipgrid, Rtpengine]]:
    with rtpengine(tmp_path / "rtpengine") as engine:
        env = {**engine.env, "SIPGRID_PHONE_PAGE": "on"}
        with all_in_one(tmp_path / "sipgrid", transports=("ws", "wss"), env=env) as sipgrid:
            yield sipgrid, engine


def token_for(sipgrid: Sipgrid, aor: str = "sip:web1@sip.local", **claims: object) -> str:
    """Signed with the key pair the all-in-one made in its data directory."""
    key = sipgrid.config_dir / "data" / PRIVATE_KEY_FILE
    return create_token(key, aor=aor, ttl=600, **claims)  # type: ignore[arg-type]


def browser(node: str, url: str, token: str, target: str, hold_ms: int = 3000) -> dict[str, object]:
    done = subprocess.run(
        [node, "browser_phone.js", url, token, target, str(hold_ms)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def media_port(sdp: str) -> int:
    found = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    assert found, sdp
    return int(found.group(1))


def test_a_browser_calls_a_phone_through_rtpengine_and_media_flows(
    node: str, media: tuple[Sipgrid, Rtpengine], tmp_path: Path
) -> None:
    sipgrid, engine = media
    expect = {"body": r"m=audio [0-9]+ RTP/AVP ", "Content-Type": "application/sdp"}
    with sipp_server(
        tmp_path,
        "phone",
        scenarios.uas("answer", expect=expect),
        extra=["-rtp_echo", "-timeout", "90"],
        media=True,  # the media ports chosen with the SIP port, again if either was taken
    ) as (port, phone):
        register_agent(tmp_path, sipgrid, port, "1002")
        url = f"https://127.0.0.1:{sipgrid.ports['wss']}/phone/"
        result = browser(node, url, token_for(sipgrid), "sip:1002@sip.local")
        assert phone.wait(timeout=30) == 0, (tmp_path / "phone.out").read_text()
    assert result["registration"] == "registered", result
    assert result["call"] == "in call", result
    remote = str(result["remoteSdp"])  # what the browser got: rtpengine, with ICE and DTLS
    assert "UDP/TLS/RTP/SAVPF" in remote and "a=fingerprint:" in remote, remote
    assert "a=ice-ufrag:" in remote and "c=IN IP4 127.0.0.1" in remote, remote
    assert media_port(remote) in engine.media_ports, remote
    rtp = result["rtp"]
    assert isinstance(rtp, dict)
    # the phone only echoes: what the browser received went browser, rtpengine (DTLS-SRTP
    # to RTP), phone, rtpengine (RTP to DTLS-SRTP), browser
    assert rtp["sent"] > 20 and rtp["received"] > 20, rtp
    assert "ended" in str(result["log"])  # hung up: BYE through sipgrid
    assert calls_in(engine) == [], "the BYE deletes the call in rtpengine"


def calls_in(engine: Rtpengine) -> list[object]:
    async def ask() -> list[object]:
        client = NgClient("127.0.0.1", engine.ng_port)
        try:
            answer = await client.command("list")
        finally:
            client.close()
        calls = answer.get(b"calls", [])
        return list(calls) if isinstance(calls, list) else []

    return asyncio.run(ask())


def test_a_refused_token_is_shown_with_its_reason(
    node: str, media: tuple[Sipgrid, Rtpengine]
) -> None:
    sipgrid, _ = media
    url = f"https://127.0.0.1:{sipgrid.ports['wss']}/phone/"
    result = browser(node, url, token_for(sipgrid, methods=["INVITE"]), "sip:1002@sip.local")
    assert result["registration"] == "refused: Forbidden (Method Not Allowed By Token)", result


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_jssip_registers_and_calls_with_a_token_over_ws_and_wss(
    node: str, media: tuple[Sipgrid, Rtpengine], tmp_path: Path, scheme: str
) -> None:
    """JsSIP under Node (no WebRTC: a fixed plain SDP) with a token instead of a password."""
    sipgrid, _ = media
    with sipp_server(tmp_path, "uas", scenarios.uas("answer")) as (port, uas):
        register_agent(tmp_path, sipgrid, port, "1002")
        url = f"{scheme}://127.0.0.1:{sipgrid.ports[scheme]}"
        found = jssip_calls_1002(node, url, token_for(sipgrid))
        assert uas.wait(timeout=20) == 0, (tmp_path / "uas.out").read_text()
    events = [e["event"] for e in found]
    assert events[:1] == ["registered"] and "confirmed" in events and "ended" in events, found


def jssip_calls_1002(node: str, url: str, token: str) -> list[dict[str, object]]:
    """JsSIP under Node registers as web1 with the token and calls 1002: its events."""
    done = subprocess.run(
        [node, "ws_phone.js", url, "web1", "", "sip.local", "call", "1002"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CONNECT_TOKEN": token},
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line]


def test_the_page_is_served_only_beside_wss(media: tuple[Sipgrid, Rtpengine]) -> None:
    import ssl
    import urllib.error
    import urllib.request

    sipgrid, _ = media
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    base = f"https://127.0.0.1:{sipgrid.ports['wss']}/phone/"
    with urllib.request.urlopen(base, context=context, timeout=5) as page:
        assert b"jssip.min.js" in page.read()
    with urllib.request.urlopen(base + "jssip.min.js", context=context, timeout=5) as script:
        assert b"JsSIP" in script.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "secret.txt", context=context, timeout=5)
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as plain:  # not on plain WS
        urllib.request.urlopen(f"http://127.0.0.1:{sipgrid.ports['ws']}/phone/", timeout=5)
    assert plain.value.code == 400  # the WebSocket's own answer: the sip subprotocol needed


class Verifier(verifier_pb2_grpc.VerifierServicer):
    """Routr's Verifier contract, as an application server would run it: one token."""

    def Verify(
        self, request: verifier_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.VerifyResponse:
        if request.token != "web1-token":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a token of ours")
        return verifier_pb2.VerifyResponse(
            payload={"aor": "sip:web1@sip.local", "allowedMethods": "REGISTER,INVITE"}
        )


@pytest.fixture
def verifier() -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    verifier_pb2_grpc.add_VerifierServicer_to_server(Verifier(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_the_distributed_wiring_asks_a_verifier_and_relays_media(
    node: str, verifier: str, tmp_path: Path
) -> None:
    """Connect asks the Verifier over gRPC (CONNECT_VERIFIER_ADDR); the Dispatcher runs
    `sipgrid serve rtprelay` after Connect, which drives rtpengine."""
    with (
        rtpengine(tmp_path / "rtpengine") as engine,
        distributed(
            tmp_path / "sipgrid",
            transports=("wss",),
            connect_env={"CONNECT_VERIFIER_ADDR": verifier},
            rtprelay_env=engine.env,
        ) as sipgrid,
    ):
        expect = {"body": r"m=audio [0-9]+ RTP/AVP "}
        with sipp_server(tmp_path, "uas", scenarios.uas("answer", expect=expect)) as (port, uas):
            register_agent(tmp_path, sipgrid, port, "1002")
            url = f"wss://127.0.0.1:{sipgrid.chain_transports[0]['wss']}"
            refused = jssip_calls_1002(node, url, "forged")
            assert refused[0]["event"] == "registrationFailed", refused
            assert (
                refused[0]["reason"] == "Forbidden (Token Refused By Verifier: not a token of ours)"
            )
            events = jssip_calls_1002(node, url, "web1-token")
            assert uas.wait(timeout=20) == 0, (tmp_path / "uas.out").read_text()
        names = [e["event"] for e in events]
        assert names[:1] == ["registered"] and "confirmed" in names and "ended" in names, events
        log = engine.log.read_text(errors="replace")
        assert "Received command 'offer'" in log and "Received command 'answer'" in log
        assert calls_in(engine) == []
