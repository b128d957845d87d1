"""IPv6: sipgrid bound on ::1, phones (sipp) on ::1, register and call over UDP and TCP.
Via and Record-Route carry the bracketed address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import scenarios
from .harness import Sipgrid, all_in_one, registered_callee, run_sipp, wait_exit

V6 = "::1"


@pytest.fixture
def sipgrid(tmp_path: Path) -> Iterator[Sipgrid]:
    with all_in_one(tmp_path / "sipgrid", host=V6) as server:
        yield server


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_and_call_over_ipv6(tmp_path: Path, sipgrid: Sipgrid, transport: str) -> None:
    with registered_callee(tmp_path, sipgrid, transport) as uas:
        call = run_sipp(
            tmp_path,
            "call",
            scenarios.call("caller"),
            server_port=sipgrid.port,
            transport=transport,
            host=V6,
            extra=["-trace_msg", "-message_file", str(tmp_path / "call.msg")],
        )
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0
    trace = (tmp_path / "call.msg").read_text(errors="replace")
    assert f"Record-Route: <sip:[{V6}]:{sipgrid.port}" in trace
