"""Graceful drain: told to stop (SIGTERM) with a call in progress, sipgrid answers new
calls 503 with Retry-After, lets the call end (its BYE goes through), then exits."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from . import scenarios
from .harness import SippResult, all_in_one, registered_callee, run_sipp, wait_exit


def test_a_stopping_sipgrid_refuses_new_calls_and_lets_the_one_in_progress_end(
    tmp_path: Path,
) -> None:
    with all_in_one(tmp_path / "sipgrid", env={"SIPGRID_DRAIN_SECONDS": "20"}) as sipgrid:
        process = sipgrid.processes[0]
        with registered_callee(tmp_path, sipgrid) as uas:
            long_call = scenarios.call("caller").replace(
                '<pause milliseconds="200"/>', '<pause milliseconds="4000"/>'
            )
            results: list[SippResult] = []
            caller = threading.Thread(
                target=lambda: results.append(
                    run_sipp(tmp_path, "long-call", long_call, server_port=sipgrid.port)
                )
            )
            caller.start()
            time.sleep(1.5)  # answered, and talking
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            refused = run_sipp(
                tmp_path,
                "new-call",
                scenarios.call_rejected(503, challenged=False),
                server_port=sipgrid.port,
            )
            assert refused.ok, refused.output + sipgrid.log_text()[-2000:]
            assert process.poll() is None  # still there: a call is in progress
            caller.join(timeout=30)
            assert results and results[0].ok, results and results[0].output
            assert wait_exit(uas) == 0
        assert process.wait(timeout=15) == 0  # gone once the call ended
        log = sipgrid.log_text()
    assert "stopping: new calls get 503; waiting up to 20 s for 1 calls" in log
