"""Every metric the Grafana dashboard (deploy/grafana/dashboards/sipgrid.json) asks for
is there, with samples, on a live distributed wiring after a registration and a call:
the EdgePort's /metrics and METRICS_BIND_ADDR of the other services. The same counters
show which way messages went between the services: sipgrid's streams, or Routr's unary
calls (SIPGRID_STREAMS=0)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import scenarios
from .harness import (
    ROOT,
    distributed,
    event,
    free_port,
    page,
    registered_callee,
    run_sipp,
    wait_exit,
)

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "sipgrid.json"


def queried() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    names: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b((?:sipgrid|process)_[a-z0-9_]+)\b", target["expr"]))
    return names


def served(text: str, method: str) -> float:
    """gRPC calls (or messages of the stream) served for ``method``, every code."""
    pattern = rf'^sipgrid_grpc_calls_total{{code="[A-Z_]+",method="\w+/{method}"}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def samples(url: str) -> set[str]:
    text = page(url)
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_every_metric_of_the_dashboard_is_served(tmp_path: Path) -> None:
    wanted = queried()
    assert len(wanted) >= 15, wanted
    edge = free_port()
    ports = {name: free_port() for name in ("apiserver", "location", "connect", "dispatcher")}
    env = {name: {"METRICS_BIND_ADDR": f"127.0.0.1:{port}"} for name, port in ports.items()}
    spec = {"http": {"bindAddr": f"127.0.0.1:{edge}"}}
    with distributed(tmp_path / "sipgrid", edgeport=spec, service_env=env) as sipgrid:
        with registered_callee(tmp_path, sipgrid) as uas:
            call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
            assert call.ok, call.output
            assert wait_exit(uas) == 0
        found = samples(f"http://127.0.0.1:{edge}/metrics")
        for port in ports.values():
            found |= samples(f"http://127.0.0.1:{port}/metrics")
        # the REGISTERs (two) and the INVITEs (two) went from the EdgePort to Connect on
        # sipgrid's stream, not through the Dispatcher (its direct routes; only what came
        # before the EdgePort had them did: one or two), and Connect's REGISTER and lookup
        # to Location on the other
        ways = pages(ports)
        through = served(ways["dispatcher"], "ProcessMessages")
        # (a REGISTER sent again by a slow sipp is challenged again: at least four)
        assert served(ways["connect"], "ProcessMessages") >= 4, ways["connect"]
        assert served(ways["connect"], "ProcessMessages") - through >= 2, ways["dispatcher"]
        assert through >= 1, ways["dispatcher"]  # the first, which starts the watch
        for name in ("dispatcher", "connect"):
            assert served(ways[name], "ProcessMessage") == 0, ways[name]
        assert served(ways["location"], "Calls") >= 2, ways["location"]
        assert served(ways["location"], "AddRoute") == 0, ways["location"]
        assert served(ways["location"], "FindRoutes") == 0, ways["location"]
        # the call's ACK and BYE were routed by the EdgePort itself, as Connect let it with
        # the INVITE's answer (follow_dialog), and the BYE's 200 ended the dialog there
        edge_page = page(f"http://127.0.0.1:{edge}/metrics")
        assert event(edge_page, "dialog_followed") == 2, edge_page
        assert "\nsipgrid_dialogs_followed 0.0\n" in edge_page, edge_page
    missing = {
        name
        for name in wanted
        if name not in found and f"{name}_total" not in found and f"{name}_bucket" not in found
    }
    assert not missing, f"the dashboard asks for metrics nobody serves: {sorted(missing)}"


def test_with_the_streams_off_every_message_is_a_unary_call(tmp_path: Path) -> None:
    """As Routr's EdgePort, Dispatcher and Connect call a processor and Location: the
    way that a processor written for Routr is served, kept working beside the streams."""
    ports = {name: free_port() for name in ("connect", "dispatcher", "location")}
    env = {
        name: {"METRICS_BIND_ADDR": f"127.0.0.1:{port}", "SIPGRID_STREAMS": "0"}
        for name, port in ports.items()
    }
    env["edgeport"] = {"SIPGRID_STREAMS": "0"}
    edge = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{edge}"}}
    with distributed(tmp_path / "sipgrid", edgeport=spec, service_env=env) as sipgrid:
        with registered_callee(tmp_path, sipgrid) as uas:
            call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
            assert call.ok, call.output + sipgrid.log_text()
            assert wait_exit(uas) == 0
        ways = pages(ports)
        edge_page = page(f"http://127.0.0.1:{edge}/metrics")
    # the EdgePort cannot know that nothing stands between it and Connect (no direct
    # routes without the streams): the call's ACK and BYE went to Connect too
    assert event(edge_page, "dialog_followed") == 0, edge_page
    for name in ("dispatcher", "connect"):
        assert served(ways[name], "ProcessMessage") >= 6, ways[name]
        assert served(ways[name], "ProcessMessages") == 0, ways[name]
    assert served(ways["location"], "AddRoute") >= 1, ways["location"]
    assert served(ways["location"], "FindRoutes") >= 1, ways["location"]
    assert served(ways["location"], "Calls") == 0, ways["location"]


def pages(ports: dict[str, int]) -> dict[str, str]:
    """Each service's metrics page, by name."""
    return {name: page(f"http://127.0.0.1:{port}/metrics") for name, port in ports.items()}
