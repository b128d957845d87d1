"""sipp load through sipgrid: calls per second and digest REGISTERs per second.

For each wiring (all-in-one, distributed) it finds the highest call rate held for
BENCH_SECONDS (default 30) with no failed call: a sipp UAC places authenticated calls
(INVITE, 407, ACK, INVITE, 100, 180, 200, ACK, BYE, 200) to a sipp UAS registered as
1002. Then it measures REGISTERs with digest per second. Figures go to
bench/results/sip_load.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.e2e import scenarios
from tests.e2e.harness import (
    DOMAIN,
    PASSWORDS,
    Sipgrid,
    SippResult,
    all_in_one,
    distributed,
    free_port,
    require_sipp,
    run_sipp,
)

RESULTS = Path(__file__).resolve().parent / "results" / "sip_load.json"
SECONDS = int(os.environ.get("BENCH_SECONDS", "30"))
RATES = [
    int(r)
    for r in os.environ.get("BENCH_RATES", "50,100,200,300,400,500,600,800,1000,1200").split(",")
]


def _counts(output: str) -> tuple[int, int]:
    ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return (int(ok.group(1)) if ok else 0, int(failed.group(1)) if failed else -1)


def _sipp(
    directory: Path,
    name: str,
    xml: str,
    server_port: int,
    rate: int,
    total: int,
    user: str,
    keys: dict[str, str],
    extra: list[str],
) -> tuple[int, int, float]:
    path = directory / f"{name}.xml"
    path.write_text(xml)
    port = free_port()
    args = [
        require_sipp(),
        f"127.0.0.1:{server_port}",
        "-sf",
        str(path),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        "u1",
        "-r",
        str(rate),
        "-m",
        str(total),
        "-nostdin",
        "-timeout",
        str(SECONDS + 30),
        "-max_recv_loops",
        "10000",
        "-au",
        user,
        "-ap",
        PASSWORDS[user],
        "-default_behaviors",
        "all,-bye",
        "-buff_size",
        "4194304",
    ]
    for key, value in {
        "user": user,
        "domain": DOMAIN,
        "contact_host": "127.0.0.1",
        "contact_port": str(port),
        "expires": "3600",
        "callee": "1002",
        **keys,
    }.items():
        args += ["-key", key, value]
    start = time.monotonic()
    done = subprocess.run(
        args + extra, capture_output=True, cwd=directory, check=False, timeout=SECONDS + 120
    )
    elapsed = time.monotonic() - start
    ok, failed = _counts(done.stdout.decode(errors="replace"))
    return ok, failed, elapsed


@contextlib.contextmanager
def callee(directory: Path, server_port: int, users: tuple[str, ...] = ("1002",)) -> Iterator[None]:
    """A sipp UAS that answers every call, registered as each of ``users`` (1002)
    through the server."""
    uas_xml = directory / "uas.xml"
    uas_xml.write_text(scenarios.uas("answer"))
    uas_port = free_port()
    uas = subprocess.Popen(
        [
            require_sipp(),
            "-sf",
            str(uas_xml),
            "-i",
            "127.0.0.1",
            "-p",
            str(uas_port),
            "-t",
            "u1",
            "-nostdin",
            "-max_recv_loops",
            "10000",
            "-buff_size",
            "4194304",
            "-key",
            "user",
            "1001",
            "-key",
            "callee",
            "1002",
            "-key",
            "domain",
            DOMAIN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,
    )
    try:
        for user in users:
            reg = _register_uas(directory, server_port, user, uas_port, 3600)
            if not reg.ok:
                raise RuntimeError(f"could not register the UAS as {user}:\n" + reg.output[-2000:])
        yield
    finally:
        # unregistered, so that the next callee of the same users is their only contact:
        # else every call forks to the dead one too, and Timer A sends the INVITE to it
        # again and again for 32 s (bench/README.md, "A callee left registered")
        for user in users:
            _register_uas(directory, server_port, user, uas_port, 0)
        uas.terminate()
        uas.wait(timeout=5)


def _register_uas(
    directory: Path, server_port: int, user: str, uas_port: int, expires: int
) -> SippResult:
    return run_sipp(
        directory,
        f"register-uas-{user}-{expires}",
        scenarios.register(200),
        server_port=server_port,
        user=user,
        keys={"contact_port": str(uas_port), "expires": str(expires)},
    )


# an authenticated call held one second: INVITE, 407, ACK, INVITE, 100, 180, 200, ACK, BYE, 200
CALL = scenarios.call("caller").replace(
    '<pause milliseconds="200"/>', '<pause milliseconds="1000"/>'
)


def calls(server: Sipgrid, directory: Path) -> dict[str, object]:
    with callee(directory, server.port):
        best = 0
        steps = []
        for rate in RATES:
            ok, failed, elapsed = _sipp(
                directory, f"uac-{rate}", CALL, server.port, rate, rate * SECONDS, "1001", {}, []
            )
            steps.append(
                {"rate": rate, "successful": ok, "failed": failed, "seconds": round(elapsed, 1)}
            )
            print(f"  {rate:5d} cps: {ok} ok, {failed} failed in {elapsed:.1f} s", flush=True)
            if failed != 0 or ok != rate * SECONDS:
                break
            best = rate
        return {
            "highest_call_rate_without_failure": best,
            "seconds_per_step": SECONDS,
            "steps": steps,
        }


def registrations(server: Sipgrid, directory: Path) -> dict[str, object]:
    best = 0.0
    steps = []
    for rate in [
        int(r)
        for r in os.environ.get("BENCH_REG_RATES", "200,500,1000,1500,2000,2500,3000").split(",")
    ]:
        total = rate * min(SECONDS, 10)
        ok, failed, elapsed = _sipp(
            directory,
            f"reg-{rate}",
            scenarios.register(200),
            server.port,
            rate,
            total,
            "1001",
            {},
            [],
        )
        achieved = ok / elapsed if elapsed else 0.0
        steps.append(
            {
                "rate": rate,
                "successful": ok,
                "failed": failed,
                "seconds": round(elapsed, 1),
                "per_second": round(achieved),
            }
        )
        print(
            f"  {rate:5d} REGISTER/s asked: {ok} ok, {failed} failed, {achieved:.0f}/s achieved",
            flush=True,
        )
        if failed != 0 or ok != total:
            break
        best = max(best, achieved)
    return {"highest_register_rate_without_failure": round(best), "steps": steps}


def location_write() -> dict[str, object]:
    """The all-in-one's bindings written behind (once a second, the default) or through
    (before each 200): the REGISTER rate each holds, measured in one run."""
    found: dict[str, object] = {}
    for mode in ("behind", "through"):
        directory = Path(tempfile.mkdtemp(prefix=f"sipgrid-bench-write-{mode}-"))
        os.environ["LOCATION_WRITE"] = mode
        try:
            print(f"all_in_one, bindings written {mode}:", flush=True)
            with all_in_one(directory / "sipgrid", edgeport={"localnets": ["127.0.0.1/8"]}) as s:
                found[mode] = registrations(s, directory)
        finally:
            del os.environ["LOCATION_WRITE"]
            shutil.rmtree(directory, ignore_errors=True)
    return found


def main() -> None:
    require_sipp()
    report: dict[str, object] = {"seconds_per_step": SECONDS, "cpus": os.cpu_count()}
    for name, wiring in (("all_in_one", all_in_one), ("distributed", distributed)):
        directory = Path(tempfile.mkdtemp(prefix=f"sipgrid-bench-{name}-"))
        try:
            print(f"{name}:", flush=True)
            with wiring(directory / "sipgrid", edgeport={"localnets": ["127.0.0.1/8"]}) as server:
                report[name] = {
                    "calls": calls(server, directory),
                    "registrations": registrations(server, directory),
                }
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    report["location_write"] = location_write()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
