"""SIPGRID_WORKERS: several all-in-one processes on one SIP port (SO_REUSEPORT), bindings
shared through Redis, each message handed to the worker that owns it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sipgrid.services.supervisor import STEADY

from . import scenarios
from .harness import (
    ROOT,
    Sipgrid,
    all_in_one,
    children,
    distributed,
    free_port,
    quiet_port,
    redis_location,
    register_agent,
    run_sipp,
    sipp_server,
    wait_exit,
    write_config,
)

CALLS = 12


def events(url: str) -> dict[str, float]:
    """The EdgePort's event counters on its metrics page."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("sipgrid_edgeport_events_total{"):
            name = line.split('event="', 1)[1].split('"', 1)[0]
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


def wait_for(sipgrid: Sipgrid, text: str, times: int = 1) -> None:
    """Until the log holds ``text`` ``times`` times (the workers write theirs as the
    supervisor says ready)."""
    deadline = time.monotonic() + 30
    while sipgrid.log_text().count(text) < times and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sipgrid.log_text().count(text) == times, sipgrid.log_text()[-3000:]


def calls_through(
    sipgrid: Sipgrid, directory: Path, calls: int, name: str, callee_transport: str = "udp"
) -> None:
    """1002 registered from a sipp UAS, then ``calls`` calls to it, each from a sipp of
    its own. Each call belongs to the worker of its Call-ID, while the kernel gives each
    datagram to a worker by its addresses: the workers hand each other requests and
    answers, and every call must still complete."""
    uas_xml = scenarios.uas("answer")
    with sipp_server(
        directory, f"uas-{name}", uas_xml, transport=callee_transport, extra=["-m", str(calls)]
    ) as (port, uas):
        register_agent(directory, sipgrid, port, "1002", callee_transport, f"register-{name}")
        for n in range(calls):
            call = run_sipp(
                directory, f"call-{name}-{n}", scenarios.call("caller"), server_port=sipgrid.port
            )
            assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0


def sample(http: int, name: str) -> float | None:
    """One sample on worker 0's metrics page: ``name`` with its labels, as written there."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def handed(http: int) -> float:
    """Hand-offs that worker 0 made or took (it serves the metrics)."""
    counted = events(f"http://127.0.0.1:{http}/metrics")
    return counted.get("handed_off", 0) + counted.get("handed_in", 0)


def test_two_workers_share_the_port_and_hand_each_other_responses(
    tmp_path: Path, redis_url: str
) -> None:
    http = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{http}"}, "localnets": ["127.0.0.1/8"]}
    redis_location(tmp_path / "sipgrid", redis_url)
    env = {"SIPGRID_WORKERS": "2"}
    with all_in_one(tmp_path / "sipgrid", edgeport=spec, env=env) as sipgrid:
        up = time.monotonic()
        wait_for(sipgrid, "worker 0 of 2 up")
        wait_for(sipgrid, "worker 1 of 2 up")
        assert len(children(sipgrid.processes[0].pid)) == 2
        calls_through(sipgrid, tmp_path, CALLS, "first")
        assert handed(http) > 0
        # worker 0's page sums both workers' figures: every call that was answered,
        # whichever worker owned it (with worker 0's alone, about half of them)
        assert sample(http, 'sipgrid_calls_total{method="INVITE",status_class="2xx"}') == CALLS
        assert sample(http, "sipgrid_workers_reporting") == 2

        # a worker that dies is started again, and the port serves on
        time.sleep(max(0.0, STEADY - (time.monotonic() - up)))
        os.kill(children(sipgrid.processes[0].pid)[1], signal.SIGKILL)
        wait_for(sipgrid, "worker 1 of 2 up", times=2)
        assert "worker 1 ended with exit code -9; starting it again" in sipgrid.log_text()
        calls_through(sipgrid, tmp_path, 4, "again")
        assert sipgrid.processes[0].poll() is None


def test_a_callee_on_tcp_is_reached_through_worker_0_from_every_worker(
    tmp_path: Path, redis_url: str
) -> None:
    """The callee registers over TCP, so its connection is worker 0's: a call owned by
    worker 1 leaves through worker 0 (TRANSMIT), and the answers that come back on that
    connection go to worker 1."""
    http = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{http}"}, "localnets": ["127.0.0.1/8"]}
    redis_location(tmp_path / "sipgrid", redis_url)
    env = {"SIPGRID_WORKERS": "2"}
    with all_in_one(tmp_path / "sipgrid", edgeport=spec, env=env) as sipgrid:
        wait_for(sipgrid, "worker 1 of 2 up")
        calls_through(sipgrid, tmp_path, CALLS, "tcp", callee_transport="tcp")
        counted = events(f"http://127.0.0.1:{http}/metrics")
        # worker 0 took the INVITEs and ACKs and BYEs of worker 1's calls to send on
        assert counted.get("handed_in", 0) >= 3, counted
        assert counted.get("handed_off", 0) >= 3, counted  # and gave back the answers


def test_a_send_that_fails_at_worker_0_is_told_back_to_the_worker_that_asked(
    tmp_path: Path, redis_url: str
) -> None:
    """1002 registered over TCP with nothing listening at its Contact: a call to it
    leaves through worker 0 (connections are worker 0's), whose connection is refused;
    the caller gets 503 at once whichever worker owns the call, not a timeout after 32 s
    (worker 0 tells the failure back to the worker that handed it the INVITE)."""
    redis_location(tmp_path / "sipgrid", redis_url)
    env = {"SIPGRID_WORKERS": "2"}
    with all_in_one(tmp_path / "sipgrid", env=env) as sipgrid:
        wait_for(sipgrid, "worker 1 of 2 up")
        register_agent(tmp_path, sipgrid, quiet_port(), "1002", "tcp", "register-dead")
        for n in range(6):  # each Call-ID is worker 1's with even odds
            started = time.monotonic()
            refused = run_sipp(
                tmp_path, f"to-dead-{n}", scenarios.call_rejected(503), server_port=sipgrid.port
            )
            assert refused.ok, refused.output + sipgrid.log_text()[-3000:]
            assert time.monotonic() - started < 16, "no 503 before Timer B"


def test_every_worker_probes_the_static_peers(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker probes the static peers itself (an answer comes back to the worker that
    asked, by its Via branch): a peer that answers no probe is out of rotation in both,
    and a call to it gets 480 at once whichever worker owns it, not a timeout."""
    monkeypatch.setenv("SIPGRID_PEER_PROBE_INTERVAL", "0.5")
    port = quiet_port()  # nothing listens there

    def conference_at(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource["ref"] == "peer-conference":
                resource["spec"]["contactAddr"] = f"127.0.0.1:{port}"

    redis_location(tmp_path / "sipgrid", redis_url)
    env = {"SIPGRID_WORKERS": "2"}
    with all_in_one(tmp_path / "sipgrid", env=env, edit_pstn=conference_at) as sipgrid:
        wait_for(sipgrid, "worker 1 of 2 up")
        wait_for(sipgrid, "peer conference is down", times=2)  # once in each worker
        for n in range(6):  # each Call-ID is worker 1's with even odds
            refused = run_sipp(
                tmp_path,
                f"to-conference-{n}",
                scenarios.call_rejected(480),
                server_port=sipgrid.port,
                keys={"callee": "conference"},
            )
            assert refused.ok, refused.output + sipgrid.log_text()[-3000:]


def test_two_workers_complete_every_register_of_one_aor_under_load(
    tmp_path: Path, redis_url: str
) -> None:
    """Digest REGISTERs of one AOR, one contact, at 600/s through two workers: each
    exchange rewrites the same AOR in Redis, and the workers' writes race for it, as do
    the exchanges in flight within a worker. Every exchange must end in its 200. Until
    session 24 a write that lost the race read the AOR again and, after 20 tries, failed
    the REGISTER ("too much contention"): run at 530fdac^, this failed 4 times in 4."""
    redis_location(tmp_path / "sipgrid", redis_url)
    spec = {"localnets": ["127.0.0.1/8"]}
    with all_in_one(tmp_path / "sipgrid", edgeport=spec, env={"SIPGRID_WORKERS": "2"}) as sipgrid:
        wait_for(sipgrid, "worker 0 of 2 up")
        wait_for(sipgrid, "worker 1 of 2 up")
        flood = run_sipp(
            tmp_path,
            "registers",
            scenarios.register(200),
            server_port=sipgrid.port,
            extra=["-r", "600", "-m", "3000", "-l", "3000", "-timeout", "80"],
            timeout=90,
        )
        # On a loaded machine the overload guard may refuse some with 503 (Busy), as it
        # should; nothing else may fail (the race's failures were 503 Processor Failed).
        aborted = [line for line in flood.output.splitlines() if "Aborting call" in line]
        busy = [line for line in aborted if "503 Service Unavailable (Busy)" in line]
        assert flood.ok or (aborted and busy == aborted), flood.output[-2000:]
        assert len(busy) < 300, flood.output[-2000:]
        assert "contention" not in sipgrid.log_text(), sipgrid.log_text()[-3000:]


def test_the_distributed_edgeport_runs_as_two_workers(tmp_path: Path) -> None:
    http = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{http}"}, "localnets": ["127.0.0.1/8"]}
    env = {"edgeport": {"SIPGRID_WORKERS": "2"}}
    with distributed(tmp_path / "sipgrid", edgeport=spec, service_env=env) as sipgrid:
        wait_for(sipgrid, "worker 0 of 2 up")
        wait_for(sipgrid, "worker 1 of 2 up")
        calls_through(sipgrid, tmp_path, CALLS, "distributed")
        assert handed(http) > 0


def test_workers_without_redis_stop_at_start_saying_why(tmp_path: Path) -> None:
    write_config(tmp_path, free_port())
    env = {
        "SIPGRID_WORKERS": "2",
        "SIPGRID_DATA_DIR": str(tmp_path / "data"),
        "INTERNAL_BIND_ADDR": f"127.0.0.1:{free_port()}",
        "EXTERNAL_BIND_ADDR": f"127.0.0.1:{free_port()}",
        "LOCATION_BIND_ADDR": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sipgrid.cli", "run", "--config-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**__import__("os").environ, **env},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "location.yaml: field spec.cache.provider: 2 workers" in done.stderr, done.stderr
