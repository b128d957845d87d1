"""The distributed wiring with Location on Redis (location.yaml, provider redis) and
Connect's nonce counts there too: a Location process restarted between a REGISTER and
the call forgets nothing."""

from __future__ import annotations

from pathlib import Path

from . import scenarios
from .harness import distributed, registered_callee, run_sipp, wait_exit


def test_a_restarted_location_keeps_the_bindings(tmp_path: Path, redis_url: str) -> None:
    with (
        distributed(tmp_path / "sipgrid", redis_url=redis_url) as sipgrid,
        registered_callee(tmp_path, sipgrid) as uas,
    ):
        sipgrid.restart("location")
        call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0
