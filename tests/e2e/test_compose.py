"""deploy/docker-compose.yml without Docker: Debian's docker-compose accepts it, and the
same topology runs as processes here, each sipgrid service with the command and the
environment written in the compose file (read from it), against the local PostgreSQL and
Redis; a phone registers through one EdgePort and is called through the other."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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
ORDER = [
    "apiserver",
    "location",
    "connect",
    "rtprelay",
    "dispatcher",
    "edgeport-01",
    "edgeport-02",
]


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
    services = compose()["services"]
    ports = {
        name: free_port()
        for name in ("apiserver", "external", "location", "connect", "dispatcher", "rtprelay")
    }
    sip = {"edgeport-01": free_port(), "edgeport-02": free_port()}
    # what a container name or a container port becomes on one host
    hosts = {
        "dispatcher:51901": f"127.0.0.1:{ports['dispatcher']}",
        "connect:51904": f"127.0.0.1:{ports['connect']}",
        "location:51902": f"127.0.0.1:{ports['location']}",
        "rtprelay:51903": f"127.0.0.1:{ports['rtprelay']}",
        "0.0.0.0:51903": f"127.0.0.1:{ports['rtprelay']}",
        "apiserver:51907": f"127.0.0.1:{ports['apiserver']}",
        "redis://redis:6379/0": redis_url,
        "0.0.0.0:51901": f"127.0.0.1:{ports['dispatcher']}",
        "0.0.0.0:51902": f"127.0.0.1:{ports['location']}",
        "0.0.0.0:51904": f"127.0.0.1:{ports['connect']}",
        "0.0.0.0:51907": f"127.0.0.1:{ports['apiserver']}",
        "0.0.0.0:51908": f"127.0.0.1:{ports['external']}",
    }

    def local(text: str) -> str:
        for container, here in hosts.items():
            text = text.replace(container, here)
        return re.sub(r"postgresql://postgres:[^@]*@postgres:5432/sipgrid", postgres_url, text)

    config = tmp_path / "config"
    shutil.copytree(DEPLOY / "config", config)
    for path in config.rglob("*.yaml"):
        path.write_text(local(path.read_text()))
    for name, port in sip.items():
        path = config / ("edgeport-02" if name == "edgeport-02" else ".") / "edgeport.yaml"
        data = yaml.safe_load(path.read_text())
        data["spec"]["bindAddr"] = "127.0.0.1"
        data["spec"]["transport"] = [
            t for t in data["spec"]["transport"] if t["protocol"] in ("udp", "tcp")
        ]
        for transport in data["spec"]["transport"]:
            transport["port"] = port
        data["spec"]["http"]["bindAddr"] = f"127.0.0.1:{free_port()}"
        data["spec"]["localnets"] = ["127.0.0.0/8"]
        path.write_text(yaml.safe_dump(data))

    server = Sipgrid(sip["edgeport-01"], config)
    secrets = {"SIPGRID_NONCE_KEY": "compose-test", "SIPGRID_SERVICE_TOKEN": "compose-token"}
    stack = contextlib.ExitStack()
    engine = stack.enter_context(rtpengine(tmp_path / "rtpengine"))
    stack.callback(server.stop)
    with stack:
        for name in ORDER:
            service = services[name]
            command = [
                local(str(part)).replace("/etc/sipgrid", str(config)) for part in service["command"]
            ]
            env = {
                key: local(str(value)) for key, value in (service.get("environment") or {}).items()
            }
            env |= secrets | {"SIPGRID_DATA_DIR": str(tmp_path / "data")}
            if name == "rtprelay":  # the rtpengine container is a process here
                env |= engine.env
            process, log = _start(tmp_path, name, command, env)
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
