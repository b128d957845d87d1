"""SIP over WebSocket (RFC 7118) with a client no one here wrote: JsSIP under Node.js.

It registers over WS and WSS, calls a sipp UAS on UDP (the route set crosses from WS
to UDP: two Record-Route values), and takes a call from a sipp UAC: sipgrid reaches
it over its WebSocket connection although its Via and Contact name `.invalid` hosts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import scenarios
from .harness import ROOT, Sipgrid, all_in_one, distributed, registered_callee, run_sipp, wait_exit

NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None or not (NODE_DIR / "node_modules" / "jssip").is_dir():
        pytest.fail("node and tests/node/node_modules are missing: run `make test`", pytrace=False)
    return path


@pytest.fixture
def sipgrid(tmp_path: Path) -> Iterator[Sipgrid]:
    with all_in_one(tmp_path / "sipgrid", transports=("ws", "wss")) as server:
        yield server


def phone(
    node: str, url: str, mode: str, target: str = "", user: str = "1001"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node, "ws_phone.js", url, user, f"{user}-secret", "sip.local", mode, target],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def answering_phone(node: str, url: str) -> subprocess.Popen[str]:
    """JsSIP registered and waiting for a call (it printed "ready")."""
    process = phone(node, url, "answer")
    assert process.stdout is not None
    deadline = time.monotonic() + 15
    line = ""
    while time.monotonic() < deadline and '"ready"' not in line:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
    assert '"ready"' in line, (line, process.poll())
    return process


def events(process: subprocess.Popen[str], timeout: float = 25.0) -> list[dict[str, object]]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def named(found: list[dict[str, object]]) -> list[object]:
    return [e["event"] for e in found]


@pytest.mark.parametrize(("scheme", "callee"), [("ws", "udp"), ("wss", "udp"), ("ws", "tcp")])
def test_jssip_registers_and_calls_a_sipp_phone(
    node: str, sipgrid: Sipgrid, tmp_path: Path, scheme: str, callee: str
) -> None:
    url = f"{scheme}://127.0.0.1:{sipgrid.ports[scheme]}"
    with registered_callee(tmp_path, sipgrid, callee) as uas:
        process = phone(node, url, "call", "1002")
        found = events(process)
        assert process.returncode == 0, (found, sipgrid.log_text()[-3000:])
        assert named(found)[:1] == ["registered"] and "confirmed" in named(found)
        confirmed = next(e for e in found if e["event"] == "confirmed")
        route_set = confirmed["route_set"]
        assert isinstance(route_set, list) and len(route_set) == 2, route_set  # both sides
        assert any(f"transport={scheme}" in str(r) for r in route_set)
        assert wait_exit(uas) == 0


def test_a_sipp_caller_reaches_jssip_over_its_websocket(
    node: str, sipgrid: Sipgrid, tmp_path: Path
) -> None:
    process = answering_phone(node, f"ws://127.0.0.1:{sipgrid.ports['ws']}")
    caller = run_sipp(
        tmp_path,
        "call-1001",
        scenarios.call("caller"),
        server_port=sipgrid.port,
        user="1002",
        keys={"callee": "1001"},
    )
    found = events(process)
    assert caller.ok, caller.output + sipgrid.log_text()[-3000:]
    incoming = next(e for e in found if e["event"] == "incoming")
    assert "1002@sip.local" in str(incoming["from"])
    assert "ended" in named(found)


def test_the_sip_subprotocol_is_required(sipgrid: Sipgrid) -> None:
    import asyncio

    import aiohttp

    async def attempt() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{sipgrid.ports['ws']}/"):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(attempt()) == 400


def test_a_call_on_another_edgeport_reaches_jssip_through_the_one_it_is_connected_to(
    node: str, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two EdgePorts (two chains on one Redis): JsSIP registers over WebSocket with the
    first, the sipp caller calls through the second. Routr loops here (its bug #287);
    sipgrid hands the call to the EdgePort that holds the connection, and the BYE finds
    its way back through both."""
    monkeypatch.setenv("SIPGRID_NONCE_KEY", "one key for every Connect instance")
    with distributed(
        tmp_path / "sipgrid", redis_url=redis_url, chains=2, transports=("ws",)
    ) as sipgrid:
        ws_port = sipgrid.chain_transports[0]["ws"]
        process = answering_phone(node, f"ws://127.0.0.1:{ws_port}")
        caller = run_sipp(
            tmp_path,
            "call-1001",
            scenarios.call("caller"),
            server_port=sipgrid.chain_ports[1],
            user="1002",
            keys={"callee": "1001"},
        )
        found = events(process)
        assert caller.ok, caller.output + sipgrid.log_text()[-4000:]
        assert "ended" in named(found)
