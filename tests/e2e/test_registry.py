"""The Registry in the all-in-one: trunk-local (pstn.yaml, sendRegister on here)
registers with a sipp registrar that asks for credentials and grants 10 s; sipgrid
registers again before they run out; then the provider calls the registered Contact
with the number in the To header, and the call reaches the number's agent."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import scenarios
from .harness import ROOT, Sipgrid, all_in_one, register_agent, run_sipp, sipp_server, wait_exit


def registering_at(port: int) -> Callable[[list[dict[str, Any]]], None]:
    """trunk-local with sendRegister, its URIs at ``port``."""

    def edit(resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource["ref"] == "trunk-local":
                outbound = resource["spec"]["outbound"]
                outbound["sendRegister"] = True
                for uri in outbound["uris"]:
                    uri["uri"]["port"] = port

    return edit


def test_a_trunk_registers_refreshes_and_takes_calls_at_its_contact(tmp_path: Path) -> None:
    two_cycles = scenarios.registrar(cycles=2, expires=10)
    with (
        sipp_server(tmp_path, "registrar", two_cycles, extra=["-timeout", "60"]) as (
            registrar_port,
            registrar,
        ),
        sipp_server(tmp_path, "alice", scenarios.uas("answer")) as (alice_port, alice),
        all_in_one(tmp_path / "sipgrid", edit_pstn=registering_at(registrar_port)) as sipgrid,
    ):
        # two cycles: the first registration, and the refresh before 10 s are up
        assert wait_exit(registrar, timeout=30) == 0, sipgrid.log_text()[-3000:]
        log = sipgrid.log_text()
        granted = re.findall(r"trunk trunk-local registered with \S+ for (\d+) s", log)
        assert granted == ["10", "10"], log[-3000:]
        register_agent(tmp_path, sipgrid, alice_port)
        contact = f"sip:sg-trunk-trunk-local@127.0.0.1:{sipgrid.port}"
        did = run_sipp(
            tmp_path,
            "did-to-contact",
            scenarios.did_call("+17853178070", "provider.example", to_contact=contact),
            server_port=sipgrid.port,
        )
        assert did.ok, did.output + sipgrid.log_text()[-3000:]
        assert wait_exit(alice) == 0


def trunk_status(sipgrid: Sipgrid) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "sipgrid.cli", "trunks", "status", "-o", "json"],
        cwd=ROOT,
        env={**os.environ, "SIPGRID_REGISTRY_ADDR": f"127.0.0.1:{sipgrid.location_port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_a_provider_unavailable_twice_is_retried_with_growing_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503, 503, then the registrar answers: two failures, waits that double (0.5 s
    then about 1 s here; 5 s then 10 s by default), then registered; `sipgrid trunks
    status` shows it."""
    monkeypatch.setenv("SIPGRID_REGISTRY_BACKOFF", "0.5")
    twice_unavailable = scenarios.registrar(cycles=1, expires=60, unavailable=2)
    with (
        sipp_server(tmp_path, "registrar", twice_unavailable, extra=["-timeout", "60"]) as (
            port,
            registrar,
        ),
        all_in_one(tmp_path / "sipgrid", edit_pstn=registering_at(port)) as sipgrid,
    ):
        assert wait_exit(registrar, timeout=30) == 0, sipgrid.log_text()[-3000:]
        log = sipgrid.log_text()
        waits = [float(w) for w in re.findall(r"\(503\), next try in ([0-9.]+) s", log)]
        assert len(waits) == 2 and waits[1] > waits[0], log[-3000:]
        deadline = time.monotonic() + 10
        while (status := trunk_status(sipgrid))[0]["state"] != "registered":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        (row,) = status
        assert row["ref"] == "trunk-local" and row["failures"] == 0
        assert row["last_answer"] == "200 OK" and 0 < row["expires_in"] <= 60
        assert row["registrar"] == f"127.0.0.1:{port};transport=udp"


def test_a_provider_that_never_answers_gets_retransmissions_not_a_tight_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registrar that says nothing: sipgrid's REGISTER is retransmitted on Timer E
    (0.5 s doubling to 4 s) within one transaction, nothing more, until Timer F (32 s)
    ends it as a failure (the in-memory tests follow it from there)."""
    monkeypatch.setenv("SIPGRID_REGISTRY_BACKOFF", "0.5")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(0.2)
        port = silent.getsockname()[1]
        with all_in_one(tmp_path / "sipgrid", edit_pstn=registering_at(port)) as sipgrid:
            received: list[bytes] = []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    received.append(silent.recv(65535))
            branches = {m.group(1) for r in received if (m := re.search(rb"branch=([^;\r\n]+)", r))}
            assert 3 <= len(received) <= 6, len(received)  # the first send and Timer E's
            assert len(branches) == 1  # one transaction: no new REGISTER yet
            (row,) = trunk_status(sipgrid)
            assert row["state"] == "registering" and row["failures"] == 0
