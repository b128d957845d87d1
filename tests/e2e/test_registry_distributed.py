"""The distributed Registry: REGISTERs go through the Requester (`sipgrid serve
requester`), trunks come from the APIServer, and two Registry processes share a lease
per trunk in Redis: Kamailio, the provider's registrar, sees one of them register the
trunk while the other stands by; kill the one that registers, and the other takes over
before the binding runs out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .harness import ROOT, _start, _wait_ready, distributed, free_port
from .test_registry import registering_at
from .test_registry_kamailio import bindings, kamailio_registrar, until


@contextmanager
def service(
    directory: Path, name: str, args: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    process, log = _start(directory, name, args, env)
    try:
        _wait_ready(process, log, "sipgrid: ready")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def state(addr: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sipgrid.cli", "trunks", "status", "-o", "json"],
        cwd=ROOT,
        env={**os.environ, "SIPGRID_REGISTRY_ADDR": addr},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return "unreachable"
    rows = json.loads(done.stdout)
    return str(rows[0]["state"]) if rows else "none"


def test_two_registries_share_a_trunk_through_a_lease(tmp_path: Path, redis_url: str) -> None:
    with (
        kamailio_registrar(tmp_path / "kamailio") as (kamailio, ctl),
        distributed(
            tmp_path / "sipgrid", redis_url=redis_url, edit_pstn=registering_at(kamailio)
        ) as sipgrid,
    ):
        requester_addr = f"127.0.0.1:{free_port()}"
        addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        env = {
            "APISERVER_ADDR": f"127.0.0.1:{sipgrid.api_port}",
            "REQUESTER_ADDR": requester_addr,
            "CONTACT_ADDR": f"127.0.0.1:{sipgrid.port}",
            "REDIS_URL": redis_url,
            "SIPGRID_REGISTRY_BACKOFF": "0.5",
        }
        directory = tmp_path / "sipgrid"
        with (
            service(
                directory,
                "requester",
                ["serve", "requester", "--bind-addr", requester_addr],
                {},
            ),
            service(
                directory, "registry-1", ["serve", "registry", "--bind-addr", addrs[0]], env
            ) as first,
            service(
                directory, "registry-2", ["serve", "registry", "--bind-addr", addrs[1]], env
            ) as second,
        ):
            contact = f"sg-trunk-trunk-local@127.0.0.1:{sipgrid.port}"
            until("the binding in Kamailio", lambda: contact in bindings(ctl))
            until(
                "one registered, one standing by",
                lambda: sorted(state(a) for a in addrs) == ["registered", "standby"],
            )
            holder, other = (0, 1) if state(addrs[0]) == "registered" else (1, 0)
            (first, second)[holder].kill()  # no goodbye: the lease has to run out
            (first, second)[holder].wait()
            until(
                "the other registry takes the trunk over",
                lambda: state(addrs[other]) == "registered",
                timeout=30,
            )
            time.sleep(11)  # longer than Kamailio's 10 s: only a refresh keeps it
            assert contact in bindings(ctl)
