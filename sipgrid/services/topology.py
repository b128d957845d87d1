"""deploy/docker-compose.yml's topology as processes on one host: each sipgrid service
with the command and the environment the compose file gives it (read from the file, not
written twice), container names and ports turned into 127.0.0.1 and ports of this host,
PostgreSQL, Redis and rtpengine the ones that run here.

``make run-distributed`` runs it for a developer (python -m services.topology); the
compose test runs it on free ports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sipgrid.services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# sipgrid's services in the order they start (the compose file's depends_on order)
ORDER = [
    "apiserver",
    "location",
    "connect",
    "rtprelay",
    "dispatcher",
    "edgeport-01",
    "edgeport-02",
]
GRPC = {  # the container port each gRPC service listens on
    "dispatcher": 51901,
    "location": 51902,
    "rtprelay": 51903,
    "connect": 51904,
    "apiserver": 51907,
    "external": 51908,
}


@dataclass
class Step:
    name: str
    args: list[str]  # for `sipgrid ...`
    env: dict[str, str]


@dataclass
class Topology:
    """Where each part listens on this host."""

    grpc: dict[str, int]  # as GRPC, on this host
    sip: dict[str, int]  # edgeport-01, edgeport-02: UDP and TCP
    http: dict[str, int]  # the EdgePorts' /healthz, /readyz, /metrics
    postgres_url: str
    redis_url: str
    rtpengine: dict[str, str] | None = None  # RTPENGINE_HOST/PORT; None: no media relay
    secrets: dict[str, str] = field(default_factory=dict)

    def local(self, text: str) -> str:
        """A compose value with container names and ports made this host's."""
        for name, port in self.grpc.items():
            here = f"127.0.0.1:{port}"
            container = GRPC[name]
            text = text.replace(f"{name}:{container}", here).replace(f"0.0.0.0:{container}", here)
        text = text.replace("redis://redis:6379/0", self.redis_url)
        return re.sub(r"postgresql://postgres:[^@]*@postgres:5432/sipgrid", self.postgres_url, text)

    def compose(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        return data

    def write_config(self, target: Path) -> Path:
        """deploy/config, made local: SIP on UDP and TCP of this host's ports."""
        shutil.copytree(DEPLOY / "config", target, dirs_exist_ok=True)
        for path in target.rglob("*.yaml"):
            path.write_text(self.local(path.read_text()))
        for name, port in self.sip.items():
            path = target / ("edgeport-02" if name == "edgeport-02" else ".") / "edgeport.yaml"
            data = yaml.safe_load(path.read_text())
            spec = data["spec"]
            spec["bindAddr"] = "127.0.0.1"
            spec["transport"] = [t for t in spec["transport"] if t["protocol"] in ("udp", "tcp")]
            for transport in spec["transport"]:
                transport["port"] = port
            spec["http"]["bindAddr"] = f"127.0.0.1:{self.http[name]}"
            spec["localnets"] = ["127.0.0.0/8"]
            path.write_text(yaml.safe_dump(data))
        if self.rtpengine is None:  # no media relay without rtpengine
            path = target / "dispatcher.yaml"
            data = yaml.safe_load(path.read_text())
            data["spec"]["middlewares"] = [
                m for m in data["spec"].get("middlewares", []) if m["ref"] != "rtprelay"
            ]
            path.write_text(yaml.safe_dump(data))
        return target

    def steps(self, config: Path, data_dir: Path) -> list[Step]:
        services = self.compose()["services"]
        found = []
        for name in ORDER:
            if name == "rtprelay" and self.rtpengine is None:
                continue
            service = services[name]
            args = [
                self.local(str(p)).replace("/etc/sipgrid", str(config)) for p in service["command"]
            ]
            env = {k: self.local(str(v)) for k, v in (service.get("environment") or {}).items()}
            env |= self.secrets | {"SIPGRID_DATA_DIR": str(data_dir)}
            if name == "rtprelay" and self.rtpengine is not None:
                env |= self.rtpengine  # the rtpengine container is a process here
            found.append(Step(name, args, env))
        return found


def main() -> None:
    """make run-distributed: the compose topology on this host's standard ports, until
    Ctrl-C. PostgreSQL and Redis from DATABASE_URL and REDIS_URL (or the local ones);
    rtpengine from RTPENGINE_HOST (without it, no media relay)."""
    env = Settings.load()
    work = ROOT / "data" / "distributed"
    work.mkdir(parents=True, exist_ok=True)
    rtpengine = None
    if env.rtpengine_host:
        rtpengine = {
            "RTPENGINE_HOST": env.rtpengine_host,
            "RTPENGINE_PORT": str(env.rtpengine_port),
        }
    topology = Topology(
        grpc=dict(GRPC),
        sip={"edgeport-01": 5060, "edgeport-02": 6060},
        http={"edgeport-01": 8080, "edgeport-02": 8081},
        postgres_url=env.database_url or "sqlite:///" + str(work / "sipgrid.db"),
        redis_url=env.redis_url or "redis://127.0.0.1:6379/0",
        rtpengine=rtpengine,
        secrets={
            "SIPGRID_NONCE_KEY": env.nonce_key or "run-distributed",
            "SIPGRID_SERVICE_TOKEN": env.service_token or "run-distributed",
        },
    )
    config = topology.write_config(work / "config")
    processes: list[subprocess.Popen[bytes]] = []
    names: list[str] = []

    def stop(*_: object) -> None:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for step in topology.steps(config, work):
        log = (work / f"{step.name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "sipgrid.cli", *step.args],
                env={**os.environ, **step.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        names.append(step.name)
        print(f"started {step.name}: sipgrid {' '.join(step.args)} (log: {log.name})", flush=True)
        time.sleep(1.5 if step.name == "apiserver" else 0.5)
    print(
        "sipgrid: the compose topology runs here: SIP on 127.0.0.1:5060 (edgeport-01) and "
        "6060 (edgeport-02), the API on 51908; Ctrl-C stops it",
        flush=True,
    )
    while all(p.poll() is None for p in processes):
        time.sleep(1)
    failed = [name for name, p in zip(names, processes, strict=True) if p.poll() is not None]
    print(f"sipgrid: a service stopped ({', '.join(failed)}): see {work}/*.log", flush=True)
    stop()


if __name__ == "__main__":
    main()
