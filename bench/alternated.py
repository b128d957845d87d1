"""The aims of issue #12 decided on several rounds, not on one run.

Two runs of `versus.py` on one code, half an hour apart, gave ratios on either side of every
aim of the all-in-one (bench/README.md, session 24: digest REGISTERs at 300/s 1.39 and
4.38 times Kamailio's CPU). One run cannot say whether an aim is met. Here Kamailio (its
registrar stateless, as in its example config), Kamailio with a stateful registrar, the
all-in-one and the distributed wiring (its calls' aim: five processes, on frames) are all up
at once, idle but for the one run being measured. Each round runs
each aim's flow through each server in turn, the servers' order turned round every other
round, so that what the machine does over a few minutes falls on both sides of a ratio.
A server's run starts no sooner than TIMER_J + 3 s after its last run ended (`versus.settle`):
what a run leaves behind is not charged to the next.

For each aim, the ratio sipgrid / Kamailio of each round and their median, which is the
figure to hold against the aim. Written to bench/results/alternated.json, and a table is
printed. BENCH_ROUNDS (5) rounds; one takes about four minutes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sip_load import CALL, SECONDS, _sipp, callee
from bench.versus import (
    CALL_RATE,
    REG_RATES,
    TIMER_J,
    Server,
    heading,
    kamailio_server,
    measured,
    registering,
)
from tests.e2e.harness import all_in_one, distributed

RESULTS = Path(__file__).resolve().parent / "results" / "alternated.json"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
KAMAILIO, STATEFUL, SIPGRID = "kamailio", "kamailio_stateful_register", "sipgrid"
DISTRIBUTED = "distributed"


@dataclass(frozen=True)
class Aim:
    """A flow, the servers it runs through (sipgrid's wiring last), and the ratio it must
    not pass."""

    key: str
    label: str
    limit: float
    peers: tuple[str, ...]  # the Kamailio servers sipgrid is set beside
    subject: str = SIPGRID  # the wiring of sipgrid measured: the all-in-one or the distributed


def aims() -> list[Aim]:
    found = [Aim("calls", f"CPU ms per authenticated call at {CALL_RATE}/s", 1.5, (KAMAILIO,))]
    for rate in REG_RATES:
        label = f"CPU ms per digest REGISTER at {rate}/s"
        found.append(Aim(f"registers_{rate}", label, 2.0, (KAMAILIO, STATEFUL)))
    label = f"distributed: CPU ms per authenticated call at {CALL_RATE}/s, five processes"
    found.append(Aim("distributed_calls", label, 3.0, (KAMAILIO,), DISTRIBUTED))
    return found


class Paced:
    """Each server's runs spaced TIMER_J + 3 s apart, end to start; other servers' runs may
    fill the gap."""

    def __init__(self) -> None:
        self.ended: dict[str, float] = {}

    def run(
        self, name: str, server: Server, flow: Callable[[], tuple[int, int, float]]
    ) -> dict[str, object]:
        wait = self.ended.get(name, 0.0) + TIMER_J + 3 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return measured(server, flow)
        finally:
            self.ended[name] = time.monotonic()


def flow(aim: Aim, server: Server, directory: Path) -> Callable[[], tuple[int, int, float]]:
    if aim.key in ("calls", "distributed_calls"):
        total = CALL_RATE * SECONDS
        return functools.partial(
            _sipp, directory, "calls", CALL, server.port, CALL_RATE, total, "1001", {}, []
        )
    return registering(directory, server, int(aim.key.removeprefix("registers_")))


def rounds(servers: dict[str, Server], directories: dict[str, Path]) -> list[dict[str, object]]:
    """ROUNDS rounds of every aim through every server it names; each run as `measured`
    gives it, by round, aim and server."""
    paced, found = Paced(), []
    for number in range(ROUNDS):
        this: dict[str, object] = {}
        for aim in aims():
            names = [*aim.peers, aim.subject]
            order = names if number % 2 == 0 else names[::-1]
            runs = {
                name: paced.run(name, servers[name], flow(aim, servers[name], directories[name]))
                for name in order
            }
            this[aim.key] = runs
            print(f"  round {number + 1}, {aim.key}: {_cpus(runs)}", flush=True)
        found.append(this)
    return found


def _cpus(runs: Mapping[str, object]) -> str:
    return ", ".join(f"{name} {_cpu(run)}" for name, run in runs.items())


def _cpu(run: object) -> float:
    """CPU ms per exchange of a run, NaN where more than one exchange in a hundred failed:
    such a run did not measure the flow it meant to. Kamailio fails a call or a few of
    3000 at 200/s now and then (6 in one run of session 25), which changes little."""
    if not isinstance(run, dict):
        return float("nan")
    ok, failed = int(run.get("successful", 0)), int(run.get("failed", -1))
    if not ok or failed < 0 or failed * 100 > ok + failed:
        return float("nan")
    return float(run["cpu_ms_each"])


def summary(report: dict[str, object]) -> dict[str, dict[str, Any]]:
    """For each aim and Kamailio it is held against: each round's ratio, their median
    (over the rounds in which no run lost more than one exchange in a hundred) and whether
    the median is within the aim."""
    runs = report["rounds"]
    assert isinstance(runs, list)
    found: dict[str, dict[str, Any]] = {}
    for aim in aims():
        for peer in aim.peers:
            ratios = [
                _cpu(one[aim.key][aim.subject]) / _cpu(one[aim.key][peer])
                for one in runs
                if aim.key in one
            ]
            if not ratios:  # a report from before the aim was run
                continue
            whole = [r for r in ratios if r == r]  # NaN: a run that lost too many
            middle = statistics.median(whole) if whole else float("nan")
            found[f"{aim.key}_over_{peer}"] = {
                "ratios": [round(r, 2) for r in ratios],
                "median": round(middle, 2),
                "limit": aim.limit,
                "met": middle <= aim.limit,
            }
    return found


def table(report: dict[str, object]) -> str:
    summed = report["summary"]
    assert isinstance(summed, dict)
    rows = [("", "each round", "median", "aim")]
    for aim in aims():
        for peer in aim.peers:
            ratio = summed.get(f"{aim.key}_over_{peer}")
            if ratio is None:
                continue
            whose = ", Kamailio's registrar stateful" if peer == STATEFUL else ""
            each = " ".join(f"{r:.2f}" for r in ratio["ratios"])
            verdict = f"{ratio['limit']}: {'met' if ratio['met'] else 'missed'}"
            rows.append((f"{aim.label}{whose}", each, f"{ratio['median']:.2f}", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows]
    head = f"sipgrid / Kamailio, {report['rounds_run']} alternated rounds, on {report['python']}"
    return "\n".join([head, *lines])


def main() -> None:
    os.environ["SIPGRID_TEST_LOG_LEVEL"] = "warning"  # as a production server would log
    work = Path(tempfile.mkdtemp(prefix="sipgrid-alternated-"))
    directories = {name: work / name for name in (KAMAILIO, STATEFUL, SIPGRID, DISTRIBUTED)}
    for directory in directories.values():
        directory.mkdir()
    report = {**heading(), "rounds_run": ROUNDS}
    print(f"sipgrid and Kamailio, {ROUNDS} alternated rounds:", flush=True)
    with contextlib.ExitStack() as up:
        up.callback(shutil.rmtree, work, ignore_errors=True)
        kamailio = up.enter_context(kamailio_server(directories[KAMAILIO]))
        stateful = up.enter_context(kamailio_server(directories[STATEFUL], stateful_register=True))
        one = up.enter_context(
            all_in_one(directories[SIPGRID], edgeport={"localnets": ["127.0.0.1/8"]})
        )
        processes = list(one.processes)
        sipgrid = Server(SIPGRID, one.port, lambda: [p.pid for p in processes])
        grid = up.enter_context(
            distributed(directories[DISTRIBUTED], edgeport={"localnets": ["127.0.0.1/8"]})
        )
        parts = list(grid.processes)  # EdgePort, Dispatcher, Connect, Location, APIServer
        split = Server(DISTRIBUTED, grid.port, lambda: [p.pid for p in parts])
        servers = {KAMAILIO: kamailio, STATEFUL: stateful, SIPGRID: sipgrid, DISTRIBUTED: split}
        for name in (KAMAILIO, SIPGRID, DISTRIBUTED):  # the callee of the calls, 1002
            up.enter_context(callee(directories[name], servers[name].port))
        report["rounds"] = rounds(servers, directories)
    report["summary"] = summary(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
