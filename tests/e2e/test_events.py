"""What an operator sees of one call: NATS events with Routr's subjects and fields (the
NATS server on this machine), one log line per call and per hang-up, and the call
metrics moving on /metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from . import scenarios
from .harness import all_in_one, distributed, free_port, registered_callee, run_sipp, wait_exit


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


Events = list[tuple[str, dict[str, Any]]]


def events_while(
    url: str,
    subjects: str,
    action: Callable[[], object],
    enough: Callable[[Events], bool],
    seconds: float = 5,
) -> Events:
    """What NATS delivers on ``subjects`` while ``action`` runs (in a thread), then up to
    ``seconds`` more until ``enough`` says so: (subject, fields) in order."""

    async def scenario() -> Events:
        client = await nats.connect(url)
        got: Events = []

        async def keep(message: Any) -> None:
            got.append((message.subject, json.loads(message.data)))

        await client.subscribe(subjects, cb=keep)
        await client.flush()
        await asyncio.to_thread(action)
        for _ in range(int(seconds * 10)):  # the events are on their way
            if enough(got):
                break
            await asyncio.sleep(0.1)
        await client.drain()
        return got

    return asyncio.run(scenario())


def test_one_call_gives_nats_events_log_lines_and_metrics(
    tmp_path: Path, nats_subject: tuple[str, str]
) -> None:
    url, subject = nats_subject
    http = free_port()
    env = {"NATS_URL": url, "NATS_PUBLISHER_SUBJECT": subject}
    spec = {"http": {"bindAddr": f"127.0.0.1:{http}"}, "localnets": ["127.0.0.1/8"]}
    with all_in_one(tmp_path / "sipgrid", env=env, edgeport=spec) as sipgrid:
        metrics = f"http://127.0.0.1:{http}/metrics"
        answered = 'sipgrid_calls_total{method="INVITE",status_class="2xx"}'
        before = metric(metrics, answered)

        got = events_while(
            url, f"{subject}.>", lambda: place_call(tmp_path, sipgrid), lambda got: len(got) >= 3
        )
        assert metric(metrics, answered) == before + 1
        assert metric(metrics, "sipgrid_call_setup_seconds_count") >= 1
        assert metric(metrics, "sipgrid_calls_in_progress") == 0
        log = sipgrid.log_text()
    subjects = [s for s, _ in got]
    assert f"{subject}.endpoint.registered" in subjects, got
    started = next(f for s, f in got if s == f"{subject}.call.started")
    ended = next(f for s, f in got if s == f"{subject}.call.ended")
    registered = next(f for s, f in got if s == f"{subject}.endpoint.registered")
    assert started["from"] == "sip:1001@sip.local" and started["to"] == "sip:1002@sip.local"
    assert started["callId"] == ended["callId"] and ended["hangupCause"] == "NORMAL_CLEARING"
    assert started["startTime"].endswith("Z") and isinstance(started["extraHeaders"], dict)
    assert registered["aor"] == "sip:1002@sip.local" and registered["expires"] > 0
    assert "call.started sip:1001@sip.local -> sip:1002@sip.local 200 after" in log
    assert "call.ended sip:1001@sip.local -> sip:1002@sip.local 200 after" in log
    # the caller's first INVITE was challenged (407): not a failed call, and not at info
    assert "call.challenged" not in log and "call.failed" not in log


def place_call(directory: Path, sipgrid: Any) -> None:
    with registered_callee(directory, sipgrid) as uas:
        call = run_sipp(directory, "call", scenarios.call("caller"), server_port=sipgrid.port)
        assert call.ok, call.output
        assert wait_exit(uas) == 0


SHORT_LIVED = [
    {
        "apiVersion": "v2beta1",
        "kind": "Credentials",
        "ref": "credentials-1009",
        "metadata": {"name": "1009"},
        "spec": {"credentials": {"username": "1009", "password": "1009-secret"}},
    },
    {
        "apiVersion": "v2beta1",
        "kind": "Agent",
        "ref": "agent-1009",
        "metadata": {"name": "Registers for two seconds"},
        "spec": {
            "username": "1009",
            "domainRef": "domain-local",
            "credentialsRef": "credentials-1009",
            "expires": 2,
        },
    },
]


@pytest.mark.parametrize("wiring", ["all-in-one", "distributed"])
def test_a_registration_that_runs_out_gives_endpoint_expired(
    tmp_path: Path, nats_subject: tuple[str, str], wiring: str
) -> None:
    """The all-in-one, and the Location service of the distributed wiring, announce it."""
    url, subject = nats_subject
    env = {"NATS_URL": url, "NATS_PUBLISHER_SUBJECT": subject}
    if wiring == "all-in-one":
        started = all_in_one(tmp_path / "sipgrid", env=env, extra_resources=SHORT_LIVED)
    else:
        every = {name: env for name in ("edgeport", "location")}
        started = distributed(tmp_path / "sipgrid", service_env=every, extra_resources=SHORT_LIVED)
    with started as sipgrid:

        def register() -> None:
            registered = run_sipp(
                tmp_path,
                "register-1009",
                scenarios.register(200),
                server_port=sipgrid.port,
                user="1009",
                password="1009-secret",
                keys={"expires": "2", "contact_port": "7109"},
            )
            assert registered.ok, registered.output

        got = events_while(  # two seconds to run out, one for the sweep
            url,
            f"{subject}.endpoint.>",
            register,
            lambda got: any(s.endswith(".endpoint.expired") for s, _ in got),
            seconds=8,
        )
    subjects = [s for s, _ in got]
    assert subjects == [f"{subject}.endpoint.registered", f"{subject}.endpoint.expired"], got
    expired = got[1][1]
    assert expired["aor"] == "sip:1009@sip.local", expired
    assert expired["contact"].startswith("sip:1009@") and ":7109" in expired["contact"]
    assert expired["expiredAt"].endswith("Z")
    assert got[0][1]["expires"] == 2
