"""deploy/docker-compose.yml without Docker: Debian's docker-compose accepts it, and the
same topology runs as processes here, each sipgrid service with the command and the
environment written in the compose file (read from it), against the local PostgreSQL and
Redis; a phone registers through one EdgePort and is called through the other."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipgrid.services.topology import GRPC, ORDER, Topology

from . import scenarios
from .harness import (
    ROOT,
    Sipgrid,
    _start,
    _wait_ready,
    free_port,
    rtpengine,
    run_sipp,
    sipp_server,
    wait_exit,
)

DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is missing: run `make test` (Debian package docker-compose)",
            pytrace=False,
        )
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    shutil.copy(DEPLOY / ".env.example", copy / ".env")
    done = subprocess.run(
        [binary, "-f", str(copy / "docker-compose.yml"), "config", "-q"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    services = compose()["services"]
    for name in ORDER:
        service = services[name]
        assert service["command"][0] == "serve" and "healthcheck" in service, name
        waits = service.get("depends_on", {})
        assert all(
            c.get("condition") == "service_healthy"
            for dependency, c in waits.items()
            if dependency != "rtpengine"  # not ours: started is all it says
        ), name


def test_the_compose_topology_runs_as_processes(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """services.topology (what make run-distributed runs) on free ports, rtpengine a
    process of this test."""
    stack = contextlib.ExitStack()
    engine = stack.enter_context(rtpengine(tmp_path / "rtpengine"))
    topology = Topology(
        grpc={name: free_port() for name in GRPC},
        sip={"edgeport-01": free_port(), "edgeport-02": free_port()},
        http={"edgeport-01": free_port(), "edgeport-02": free_port()},
        postgres_url=postgres_url,
        redis_url=redis_url,
        rtpengine=engine.env,
        secrets={"SIPGRID_NONCE_KEY": "compose-test", "SIPGRID_SERVICE_TOKEN": "compose-token"},
    )
    config = topology.write_config(tmp_path / "config")
    sip = topology.sip
    server = Sipgrid(sip["edgeport-01"], config)
    stack.callback(server.stop)
    with stack:
        for step in topology.steps(config, tmp_path / "data"):
            process, log = _start(tmp_path, step.name, step.args, step.env)
            server.processes.append(process)
            server.logs.append(log)
            _wait_ready(process, log, "sipgrid: ready")
        with sipp_server(tmp_path, "uas", scenarios.uas("answer")) as (uas_port, uas):
            registered = run_sipp(
                tmp_path,
                "register-1002",
                scenarios.register(200),
                server_port=sip["edgeport-02"],
                user="1002",
                keys={"contact_port": str(uas_port)},
            )
            assert registered.ok, registered.output + server.log_text()[-3000:]
            call = run_sipp(
                tmp_path, "call", scenarios.call("caller"), server_port=sip["edgeport-01"]
            )
            assert call.ok, call.output + server.log_text()[-3000:]
            assert wait_exit(uas) == 0
        media = engine.log.read_text(errors="replace")  # the call's SDP went through it
        assert "Received command 'offer'" in media and "Received command 'delete'" in media
