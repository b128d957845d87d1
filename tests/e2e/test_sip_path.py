"""The SIP path end to end with sipp: registrations, calls, MESSAGE and errors.

Each test runs over UDP and TCP, against the all-in-one and the distributed wiring.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import scenarios
from .harness import Sipgrid, all_in_one, distributed, run_sipp, sipp_server, wait_exit


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["one", "distributed"])
def sipgrid(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sipgrid]:
    wiring = all_in_one if request.param == "one" else distributed
    with wiring(tmp_path / "sipgrid") as server:
        yield server


def register(
    tmp_path: Path,
    sipgrid: Sipgrid,
    transport: str,
    user: str,
    contact_port: int,
    expires: int = 60,
    final: int = 200,
    password: str | None = None,
) -> None:
    result = run_sipp(
        tmp_path,
        f"register-{user}-{contact_port}-{expires}",
        scenarios.register(final),
        server_port=sipgrid.port,
        transport=transport,
        user=user,
        password=password,
        keys={"contact_port": str(contact_port), "expires": str(expires)},
    )
    assert result.ok, result.output + sipgrid.log_text()


def test_register_refresh_unregister(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    register(tmp_path, sipgrid, transport, "1001", 7000)
    register(tmp_path, sipgrid, transport, "1001", 7000)  # refresh: same binding
    result = run_sipp(
        tmp_path,
        "two-contacts",
        scenarios.register(200, check_contacts=2),
        server_port=sipgrid.port,
        transport=transport,
        keys={"contact_port": "7001"},
    )
    assert result.ok, result.output
    register(tmp_path, sipgrid, transport, "1001", 7000, expires=0)
    result = run_sipp(
        tmp_path,
        "one-left",
        scenarios.register(200, check_contacts=1),
        server_port=sipgrid.port,
        transport=transport,
        keys={"contact_port": "7001"},
    )
    assert result.ok, result.output


def test_call_caller_hangs_up(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with sipp_server(tmp_path, "uas", scenarios.uas("answer"), transport=transport) as (
        uas_port,
        uas,
    ):
        register(tmp_path, sipgrid, transport, "1002", uas_port)
        result = run_sipp(
            tmp_path, "uac", scenarios.call("caller"), server_port=sipgrid.port, transport=transport
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0


def test_call_callee_hangs_up(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with sipp_server(tmp_path, "uas", scenarios.uas("hangup"), transport=transport) as (
        uas_port,
        uas,
    ):
        register(tmp_path, sipgrid, transport, "1002", uas_port)
        result = run_sipp(
            tmp_path, "uac", scenarios.call("callee"), server_port=sipgrid.port, transport=transport
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0


def test_callee_declines(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with sipp_server(tmp_path, "uas", scenarios.uas("decline"), transport=transport) as (
        uas_port,
        uas,
    ):
        register(tmp_path, sipgrid, transport, "1002", uas_port)
        result = run_sipp(
            tmp_path,
            "uac",
            scenarios.call_rejected(603),
            server_port=sipgrid.port,
            transport=transport,
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0  # the proxy ACKed the 603 hop by hop


def test_caller_cancels(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with sipp_server(tmp_path, "uas", scenarios.uas("ring"), transport=transport) as (
        uas_port,
        uas,
    ):
        register(tmp_path, sipgrid, transport, "1002", uas_port)
        result = run_sipp(
            tmp_path,
            "uac",
            scenarios.call_cancelled(),
            server_port=sipgrid.port,
            transport=transport,
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0


def test_message_reaches_the_other_agent(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with sipp_server(tmp_path, "uas", scenarios.uas_message(), transport=transport) as (
        uas_port,
        uas,
    ):
        register(tmp_path, sipgrid, transport, "1002", uas_port)
        result = run_sipp(
            tmp_path,
            "message",
            scenarios.message(200),
            server_port=sipgrid.port,
            transport=transport,
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0


def test_callee_without_binding_gets_480(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    result = run_sipp(
        tmp_path, "uac", scenarios.call_rejected(480), server_port=sipgrid.port, transport=transport
    )
    assert result.ok, result.output + sipgrid.log_text()


def test_unknown_user_gets_404(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    result = run_sipp(
        tmp_path,
        "uac",
        scenarios.call_rejected(404),
        server_port=sipgrid.port,
        transport=transport,
        keys={"callee": "1999"},
    )
    assert result.ok, result.output + sipgrid.log_text()


def test_wrong_password_is_refused(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    register(tmp_path, sipgrid, transport, "1001", 7000, final=403, password="not-the-password")
    result = run_sipp(
        tmp_path,
        "uac",
        scenarios.call_rejected(403),
        server_port=sipgrid.port,
        transport=transport,
        password="wrong",
    )
    assert result.ok, result.output + sipgrid.log_text()


@pytest.mark.parametrize("wiring", ["one", "distributed"])
def test_lost_200_is_retransmitted_through_the_proxy(tmp_path: Path, wiring: str) -> None:
    """UDP loss: the caller ignores the first 200; the callee retransmits it (no ACK
    yet), the proxy relays the retransmission statelessly, and the call completes."""
    start = all_in_one if wiring == "one" else distributed
    with (
        start(tmp_path / "sipgrid") as sipgrid,
        sipp_server(tmp_path, "uas", scenarios.uas("answer")) as (uas_port, uas),
    ):
        register(tmp_path, sipgrid, "udp", "1002", uas_port)
        result = run_sipp(
            tmp_path, "uac", scenarios.call("caller", lose_first_200=True), server_port=sipgrid.port
        )
        assert result.ok, result.output + sipgrid.log_text()
        assert wait_exit(uas) == 0
        # the callee's retransmissions of the 200 came through the proxy to the caller
        row = re.search(r"200 <-+\s+1\s+(\d+)", result.output)
        assert row is not None and int(row.group(1)) >= 2, result.output
