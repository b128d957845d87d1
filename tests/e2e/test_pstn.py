"""The PSTN and peers end to end: sipp plays the provider (two trunk URIs), the agents
and the media-server peers; sipgrid runs all in one with the example resources
(config/resources/pstn.yaml) pointed at them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import scenarios
from .harness import (
    Sipgrid,
    all_in_one,
    distributed,
    quiet_port,
    register_agent,
    run_sipp,
    sipp_server,
    wait_exit,
    wait_for_log,
)

PSTN_CALLEE = "+15551234567"
ALICE_NUMBER = "+17853178070"  # rings sip:1001@sip.local (its aorLink)
VOICE_NUMBER = "+17853178071"  # goes to the peer "voice" (sip:voice@media.local)


def trunk_at(*ports: int, did_to: str = "") -> Callable[[list[dict[str, Any]]], None]:
    """Point trunk-local's outbound URIs at these ports (priority in this order), and
    number-alice at ``did_to``."""

    def edit(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource["ref"] == "trunk-local":
                uris = resource["spec"]["outbound"]["uris"]
                resource["spec"]["outbound"]["uris"] = [
                    {**uris[0], "uri": {**uris[0]["uri"], "port": port}, "priority": 10 * (i + 1)}
                    for i, port in enumerate(ports)
                ]
            if resource["ref"] == "number-alice" and did_to:
                resource["spec"]["location"]["aorLink"] = did_to

    return edit


def test_an_agent_calls_out_and_fails_over_from_a_503_to_the_second_uri(tmp_path: Path) -> None:
    identity = {"P-Asserted-Identity": '"Alice" <sip:17853178070@127.0.0.1>', "Privacy": "none"}
    with (
        sipp_server(tmp_path, "provider-a", scenarios.uas("reject-503")) as (port_a, first),
        sipp_server(tmp_path, "provider-b", scenarios.uas("answer", identity)) as (port_b, second),
        all_in_one(tmp_path / "sipgrid", edit_pstn=trunk_at(port_a, port_b)) as sipgrid,
    ):
        result = run_sipp(
            tmp_path,
            "dod",
            scenarios.call(),
            server_port=sipgrid.port,
            keys={"callee": PSTN_CALLEE},
        )
        assert result.ok, result.output + sipgrid.log_text()[-3000:]
        assert wait_exit(first) == 0 and wait_exit(second) == 0  # both saw their INVITE


def test_a_decline_ends_the_search_and_no_uri_left_gives_the_last_error(tmp_path: Path) -> None:
    with (
        sipp_server(tmp_path, "provider-a", scenarios.uas("reject-486")) as (port_a, first),
        sipp_server(tmp_path, "provider-b", scenarios.uas("answer")) as (port_b, second),
        all_in_one(tmp_path / "sipgrid", edit_pstn=trunk_at(port_a, port_b)) as sipgrid,
    ):
        busy = run_sipp(
            tmp_path,
            "busy",
            scenarios.call_rejected(486),
            server_port=sipgrid.port,
            keys={"callee": PSTN_CALLEE},
        )
        assert busy.ok, busy.output + sipgrid.log_text()[-3000:]
        assert wait_exit(first) == 0
        assert second.poll() is None  # a 486 is an answer: the second URI is not tried
    with (
        sipp_server(tmp_path, "down-a", scenarios.uas("reject-503")) as (port_a, first),
        sipp_server(tmp_path, "down-b", scenarios.uas("reject-502")) as (port_b, second),
        all_in_one(tmp_path / "sipgrid2", edit_pstn=trunk_at(port_a, port_b)) as sipgrid,
    ):
        failed = run_sipp(
            tmp_path,
            "failed",
            scenarios.call_rejected(502),
            server_port=sipgrid.port,
            keys={"callee": PSTN_CALLEE},
        )
        assert failed.ok, failed.output + sipgrid.log_text()[-3000:]
        assert wait_exit(first) == 0 and wait_exit(second) == 0


def test_a_did_call_from_the_provider_rings_the_numbers_agent(tmp_path: Path) -> None:
    expect = {"X-Called-Number": r"\+17853178070"}
    with (
        sipp_server(tmp_path, "alice", scenarios.uas("answer", expect)) as (alice_port, alice),
        all_in_one(tmp_path / "sipgrid") as sipgrid,
    ):
        register_agent(tmp_path, sipgrid, alice_port)
        did = run_sipp(
            tmp_path,
            "did",
            scenarios.did_call(ALICE_NUMBER, "trunk.sip.local"),
            server_port=sipgrid.port,
        )
        assert did.ok, did.output + sipgrid.log_text()[-3000:]
        assert wait_exit(alice) == 0


def test_did_calls_go_round_robin_over_two_registered_media_servers(tmp_path: Path) -> None:
    with (
        sipp_server(tmp_path, "media-1", scenarios.uas("answer")) as (port_1, media_1),
        sipp_server(tmp_path, "media-2", scenarios.uas("answer")) as (port_2, media_2),
        all_in_one(tmp_path / "sipgrid") as sipgrid,
    ):
        register_voice(tmp_path, sipgrid, "media-1", port_1)
        register_voice(tmp_path, sipgrid, "media-2", port_2)
        did_calls(tmp_path, sipgrid, 2)
        # each instance answers one call and then ends: one call each
        assert wait_exit(media_1) == 0 and wait_exit(media_2) == 0


def test_a_peer_calls_out_with_x_dod_number_and_privacy(tmp_path: Path) -> None:
    """The static peer "conference" (known by its address) places a call to the PSTN as
    the voice number, hidden."""
    identity = {"P-Asserted-Identity": "sip:17853178071@", "Privacy": "id"}
    with (
        sipp_server(tmp_path, "provider", scenarios.uas("answer", identity)) as (port, provider),
        all_in_one(tmp_path / "sipgrid", edit_pstn=trunk_at(port)) as sipgrid,
    ):
        dod = f"      X-DOD-Number: {VOICE_NUMBER}\n      X-DOD-Privacy: private\n"
        result = run_sipp(
            tmp_path,
            "peer-dod",
            scenarios.did_call(PSTN_CALLEE, "sip.local", headers=dod).replace(
                "+15551234567@provider.example", "conference@media.local"
            ),
            server_port=sipgrid.port,
        )
        assert result.ok, result.output + sipgrid.log_text()[-3000:]
        assert wait_exit(provider) == 0


def test_a_providers_challenge_is_answered_with_the_trunks_credentials(tmp_path: Path) -> None:
    """The provider asks for credentials: sipgrid answers with credentials-trunk, and the
    caller's ACK and BYE reach the provider with the CSeq of the INVITE it accepted."""
    provider_log = tmp_path / "provider-messages.log"
    with (
        sipp_server(
            tmp_path,
            "provider",
            scenarios.uas_challenging("sipgrid", "provider-secret"),
            extra=["-trace_msg", "-message_file", str(provider_log)],
        ) as (port, provider),
        all_in_one(tmp_path / "sipgrid", edit_pstn=trunk_at(port)) as sipgrid,
    ):
        result = run_sipp(
            tmp_path,
            "dod",
            scenarios.call(),
            server_port=sipgrid.port,
            keys={"callee": PSTN_CALLEE},
        )
        assert result.ok, result.output + sipgrid.log_text()[-3000:]
        assert wait_exit(provider) == 0
    received = re.findall(r"^CSeq: *(\d+) (\w+)", provider_log.read_text(), re.MULTILINE)
    requests = [(int(n), m) for n, m in received if m in ("INVITE", "ACK", "BYE")]
    # as the provider saw them (its own answers repeat the CSeq; requests come first)
    invites = [n for n, m in requests if m == "INVITE"]
    acks = sorted({n for n, m in requests if m == "ACK"})
    byes = {n for n, m in requests if m == "BYE"}
    assert invites[0] + 1 == invites[-1] and acks == [invites[0], invites[-1]], received
    assert min(byes) > invites[-1], received


def test_an_agent_on_two_devices_rings_both_one_answers_the_other_is_cancelled(
    tmp_path: Path,
) -> None:
    with (
        sipp_server(tmp_path, "desk", scenarios.uas("answer")) as (desk_port, desk),
        sipp_server(tmp_path, "mobile", scenarios.uas("ring")) as (mobile_port, mobile),
        all_in_one(tmp_path / "sipgrid") as sipgrid,
    ):
        for name, port in (("desk", desk_port), ("mobile", mobile_port)):
            registered = run_sipp(
                tmp_path,
                f"register-{name}",
                scenarios.register(200),
                server_port=sipgrid.port,
                user="1002",
                keys={"contact_port": str(port)},
            )
            assert registered.ok, registered.output
        result = run_sipp(tmp_path, "call", scenarios.call(), server_port=sipgrid.port)
        assert result.ok, result.output + sipgrid.log_text()[-3000:]
        # the desk phone answered and got the BYE; the mobile got CANCEL, answered 487
        assert wait_exit(desk) == 0 and wait_exit(mobile) == 0


@pytest.mark.parametrize("wiring", ["all-in-one", "distributed"])
def test_a_static_peer_is_taken_out_after_unanswered_probes_and_back_after_one_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wiring: str
) -> None:
    """The conference server never registers: sipgrid asks it OPTIONS (here every half
    second). Nothing listens at first: three misses, out of rotation, and a call gets 480.
    A sipp UAS that answers OPTIONS by itself (-aa) comes up: back in, and it takes a call.
    The distributed Connect sends its probes from a UDP port of its own."""
    monkeypatch.setenv("SIPGRID_PEER_PROBE_INTERVAL", "0.5")
    port = quiet_port()  # nothing listens there, until the sipp below

    def conference_at(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource["ref"] == "peer-conference":
                resource["spec"]["contactAddr"] = f"127.0.0.1:{port}"

    start = all_in_one if wiring == "all-in-one" else distributed
    with start(tmp_path / "sipgrid", edit_pstn=conference_at) as sipgrid:
        wait_for_log(sipgrid, "peer conference is down")
        refused = run_sipp(
            tmp_path,
            "to-conference-down",
            scenarios.call_rejected(480),
            server_port=sipgrid.port,
            keys={"callee": "conference"},
        )
        assert refused.ok, refused.output + sipgrid.log_text()[-3000:]
        # -aa answers the probes (each one a "call" to sipp: hence -m 1000, not 1)
        with sipp_server(
            tmp_path, "conference", scenarios.uas("answer"), port=port, extra=["-aa", "-m", "1000"]
        ):
            wait_for_log(sipgrid, "peer conference is up again")
            call = run_sipp(
                tmp_path,
                "to-conference-up",
                scenarios.call(),
                server_port=sipgrid.port,
                keys={"callee": "conference"},
            )
            assert call.ok, call.output + sipgrid.log_text()[-3000:]


def register_voice(
    tmp_path: Path, sipgrid: Sipgrid, name: str, port: int, headers: str = ""
) -> None:
    registered = run_sipp(
        tmp_path,
        f"register-{name}",
        scenarios.register(200, headers=headers),
        server_port=sipgrid.port,
        user="voice",
        password="voice-secret",
        keys={"contact_port": str(port), "domain": "media.local"},
    )
    assert registered.ok, registered.output + sipgrid.log_text()[-2000:]


def did_calls(tmp_path: Path, sipgrid: Sipgrid, count: int, headers: str = "") -> None:
    for call in range(count):
        did = run_sipp(
            tmp_path,
            f"did-{call}",
            scenarios.did_call(VOICE_NUMBER, "trunk.sip.local", headers=headers),
            server_port=sipgrid.port,
        )
        assert did.ok, did.output + sipgrid.log_text()[-3000:]


def test_least_sessions_sends_calls_to_the_instance_that_reported_fewer(tmp_path: Path) -> None:
    def least_sessions(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource["ref"] == "peer-voice":
                resource["spec"]["loadBalancing"] = {"algorithm": "least-sessions"}

    two = ["-m", "2"]
    with (
        sipp_server(tmp_path, "busy", scenarios.uas("answer"), extra=two) as (busy_port, busy),
        sipp_server(tmp_path, "idle", scenarios.uas("answer"), extra=two) as (idle_port, idle),
        all_in_one(tmp_path / "sipgrid", edit_pstn=least_sessions) as sipgrid,
    ):
        register_voice(tmp_path, sipgrid, "busy", busy_port, "X-Session-Count: 12")
        register_voice(tmp_path, sipgrid, "idle", idle_port, "X-Session-Count: 3")
        did_calls(tmp_path, sipgrid, 2)
        assert wait_exit(idle) == 0  # both calls
        assert busy.poll() is None  # none


def test_calls_with_the_same_affinity_header_stay_on_one_instance(tmp_path: Path) -> None:
    three = ["-m", "3"]
    with (
        sipp_server(tmp_path, "media-1", scenarios.uas("answer"), extra=three) as (port_1, one),
        sipp_server(tmp_path, "media-2", scenarios.uas("answer"), extra=three) as (port_2, two),
        all_in_one(tmp_path / "sipgrid") as sipgrid,
    ):
        register_voice(tmp_path, sipgrid, "media-1", port_1)
        register_voice(tmp_path, sipgrid, "media-2", port_2)
        did_calls(tmp_path, sipgrid, 3, headers="      X-Room: blue\n")
        time.sleep(0.5)
        # all three calls on one instance (which one the hash picks): it ended, the other waits
        assert sorted(p.poll() is None for p in (one, two)) == [False, True]
        assert 0 in (one.poll(), two.poll())


def test_a_pbx_registered_sip_connect_style_gets_did_calls_to_its_numbers(
    tmp_path: Path,
) -> None:
    """SIP-Connect 1.1 (RFC 6140): the PBX registers one Contact with `bnc` and no user
    for all its numbers; a call from the provider to one of them reaches the PBX with
    the number as the Request-URI user."""
    expect = {"Request-URI": r"sip:\+17853178071@127\.0\.0\.1:[0-9]+ "}
    with (
        sipp_server(tmp_path, "pbx", scenarios.uas("answer", expect)) as (pbx_port, pbx),
        all_in_one(tmp_path / "sipgrid") as sipgrid,
    ):
        registered = run_sipp(
            tmp_path,
            "register-pbx",
            scenarios.register(200, contact="<sip:[contact_host]:[contact_port];bnc>"),
            server_port=sipgrid.port,
            user="voice",
            password="voice-secret",
            keys={"contact_port": str(pbx_port), "domain": "media.local"},
        )
        assert registered.ok, registered.output
        did_calls(tmp_path, sipgrid, 1)
        assert wait_exit(pbx) == 0
