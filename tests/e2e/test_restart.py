"""A restart of `sipgrid run` loses no registration: bindings are written behind to the
embedded database and read back at start, so a phone is reached without registering
again."""

from __future__ import annotations

from pathlib import Path

from . import scenarios
from .harness import all_in_one, registered_callee, run_sipp, wait_exit


def test_a_restart_keeps_the_registrations(tmp_path: Path) -> None:
    with all_in_one(tmp_path / "sipgrid") as sipgrid, registered_callee(tmp_path, sipgrid) as uas:
        sipgrid.restart("sipgrid")  # SIGTERM, then the same command again
        assert "bindings kept from before the restart: 1" in sipgrid.log_text()
        call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0
