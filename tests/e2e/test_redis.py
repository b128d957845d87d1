"""The distributed wiring with Location on Redis (location.yaml, provider redis) and
Connect's nonce counts there too: a Location process restarted between a REGISTER and
the call forgets nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sipgrid.sip import Challenge, Response, parse
from sipgrid.sip.digest import answer

from . import scenarios
from .harness import distributed, registered_callee, run_sipp, sipp_server, wait_exit


def test_a_restarted_location_keeps_the_bindings(tmp_path: Path, redis_url: str) -> None:
    with (
        distributed(tmp_path / "sipgrid", redis_url=redis_url) as sipgrid,
        registered_callee(tmp_path, sipgrid) as uas,
    ):
        sipgrid.restart("location")
        call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0


def test_two_connects_and_two_locations_on_one_redis_answer_alike(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two whole chains (EdgePort, Dispatcher, Connect, Location) on one Redis and one
    APIServer: a media server registered through one is found through the other, the
    round robin over two instances is one sequence, and a digest answer accepted by one
    Connect is a replay for the other."""
    monkeypatch.setenv("SIPGRID_NONCE_KEY", "one key for every Connect instance")
    with (
        sipp_server(tmp_path, "media-1", scenarios.uas("answer")) as (port_1, media_1),
        sipp_server(tmp_path, "media-2", scenarios.uas("answer")) as (port_2, media_2),
        distributed(tmp_path / "sipgrid", redis_url=redis_url, chains=2) as sipgrid,
    ):
        first, second = sipgrid.chain_ports
        for name, port, through in (("media-1", port_1, first), ("media-2", port_2, second)):
            registered = run_sipp(
                tmp_path,
                f"register-{name}",
                scenarios.register(200),
                server_port=through,
                user="voice",
                password="voice-secret",
                keys={"contact_port": str(port), "domain": "media.local"},
            )
            assert registered.ok, registered.output + sipgrid.log_text()[-2000:]
        for call, through in enumerate((first, second)):
            did = run_sipp(
                tmp_path,
                f"did-{call}",
                scenarios.did_call("+17853178071", "trunk.sip.local"),
                server_port=through,
            )
            assert did.ok, did.output + sipgrid.log_text()[-3000:]
        # one call each: with a counter per Connect both calls would go to the first
        assert wait_exit(media_1) == 0 and wait_exit(media_2) == 0
        assert_replay_refused_across(first, second)


def assert_replay_refused_across(first: int, second: int) -> None:
    """REGISTER answered through the first chain; the same answer through the second
    is a replay (401), the next nonce count is fine (200)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]

        def register(to: int, cseq: int, auth: str = "") -> Response:
            text = (
                "REGISTER sip:sip.local SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrr{cseq};rport\r\n"
                "From: <sip:1001@sip.local>;tag=r\r\nTo: <sip:1001@sip.local>\r\n"
                f"Call-ID: replay-{port}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:1001@127.0.0.1:{port}>\r\nExpires: 60\r\n{auth}"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(text.encode(), ("127.0.0.1", to))
            while True:
                message = parse(sock.recv(65535))
                if isinstance(message, Response) and message.status >= 200:
                    return message

        challenged = register(first, 1)
        challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")

        def auth(nc: int) -> str:
            creds = answer(
                challenge,
                method="REGISTER",
                uri="sip:sip.local",
                username="1001",
                password="1001-secret",
                nc=nc,
                cnonce="fixed",
            )
            return f"Authorization: {creds}\r\n"

        assert register(first, 2, auth(1)).status == 200
        assert register(second, 3, auth(1)).status == 401  # the other Connect saw it too
        assert register(second, 4, auth(2)).status == 200
