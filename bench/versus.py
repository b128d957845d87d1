"""sipgrid beside Kamailio, in one run: the same sipp flows through each server.

For each server: the CPU its processes spend per authenticated call (INVITE, 407, ACK,
INVITE with digest, 100, 180, 200, ACK, BYE, 200) at BENCH_CALL_RATE calls/s, per call from
a trunk to a number (INVITE without credentials, 100, 180, 200, ACK, BYE, 200), per digest
REGISTER (REGISTER, 401, REGISTER, 200) at each of BENCH_VERSUS_REG_RATES, and the highest call
rate held for BENCH_SECONDS with no failed call. The distributed wiring's calls on sipgrid's
streams (their calls on the servers' frames) at BENCH_CALL_RATE and at BENCH_DISTRIBUTED_CALL_RATE
and, for comparison, at the latter on the gRPC streams alone (SIPGRID_FRAMES=0) and with one
unary call per message or lookup (Routr's way); Kamailio's calls are run at that
rate too, so that each ratio compares the two at one rate (a call's CPU depends on the rate: at
100 calls/s Kamailio spent 2.15 to 2.27 ms a call where it spent 1.76 to 1.91 at 200/s). Then
the all-in-one as 1 and as 2 worker
processes on one port (BENCH_WORKERS, SIPGRID_WORKERS), both with bindings in Redis (which
more than one worker needs), for the same call and REGISTER figures. CPU comes from /proc (utime + stime of
every process of the server, threads included); sipp's own CPU is not counted. Absolute
figures on a shared machine swing by 20 %: the ratio sipgrid / Kamailio in one run is
the figure that counts. Each measured run after the first waits until what the one before it
left has ended (settle). Written to bench/results/versus.json, and a table is printed.

Kamailio runs bench/kamailio.cfg: a stateful proxy with digest on REGISTER and INVITE,
Record-Route and bindings in memory, what the all-in-one does on these flows, but for one
thing: its registrar answers statelessly, as Kamailio's own example config does, where
sipgrid's keeps the transaction (RFC 3261 section 8.2.7 rules out stateless registrars). So
the REGISTERs are run again through a second Kamailio whose registrar keeps it
(t_newtran), and the table gives both ratios.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.sip_load import CALL, SECONDS, _sipp, callee
from tests.e2e import scenarios
from tests.e2e.harness import (
    KAMAILIO_MODULES,
    all_in_one,
    children,
    distributed,
    free_port,
    kamailio,
    redis_location,
)

RESULTS = Path(__file__).resolve().parent / "results" / "versus.json"
KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio.cfg"
CALL_RATE = int(os.environ.get("BENCH_CALL_RATE", "200"))
DISTRIBUTED_CALL_RATE = int(os.environ.get("BENCH_DISTRIBUTED_CALL_RATE", "100"))
# Kamailio and the distributed wiring (on streams) run calls at both
CALL_RATES = tuple(dict.fromkeys((CALL_RATE, DISTRIBUTED_CALL_RATE)))
REG_RATES = [int(r) for r in os.environ.get("BENCH_VERSUS_REG_RATES", "300,2000").split(",")]
REG_SECONDS = int(os.environ.get("BENCH_REG_SECONDS", "10"))
STEP_RATES = [int(r) for r in os.environ.get("BENCH_STEP_RATES", "200,300,400,500,600").split(",")]
WORKER_COUNTS = [int(n) for n in os.environ.get("BENCH_WORKERS", "1,2").split(",") if n]
WORKERS_REDIS = os.environ.get("SIPGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/13"
HELD_RATE = int(os.environ.get("BENCH_HELD_RATE", "200"))
HOLD_SECONDS = int(os.environ.get("BENCH_HOLD_SECONDS", "10"))
TIMER_J = 32  # seconds that a transaction's state stays after its end (64 * T1)
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    port: int
    pids: Callable[[], list[int]]


def interpreter() -> str:
    """The Python that runs sipgrid: the same code cost 12 to 22 % more CPU on a plain
    source build (pyenv's) than on Debian's python3.11 (bench/README.md)."""
    return f"Python {platform.python_version()} ({os.path.realpath(sys.executable)})"


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these processes so far (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / TICKS


def group(leader: int) -> list[int]:
    """Every process whose process group is ``leader``'s (Kamailio's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:
                found.append(int(entry.name))
    return found


def pss_mb(pids: list[int]) -> float:
    """Memory of these processes, in MB: the proportional set size (Pss, summed), which
    counts a page that several processes share once in all, not once in each (Kamailio's
    processes share its memory pool)."""
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(
            (int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0
        )
    return round(total / 1024, 1)


def service(pid: int) -> str | None:
    """The sipgrid service a process serves (``sipgrid serve <service>``), else None."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return args[args.index(b"serve") + 1].decode() if b"serve" in args[:-1] else None


def measured(server: Server, run: Callable[[], tuple[int, int, float]]) -> dict[str, object]:
    """CPU and memory of one run; in the distributed wiring, also each service's CPU."""
    pids = server.pids()
    services = {pid: name for pid in pids if (name := service(pid)) is not None}
    before = cpu_seconds(pids)
    each_before = {pid: cpu_seconds([pid]) for pid in services}
    memory = pss_mb(pids)
    ok, failed, elapsed = run()
    spent = cpu_seconds(pids) - before
    found: dict[str, object] = {
        "successful": ok,
        "failed": failed,
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(spent, 3),
        "cpu_ms_each": round(1000 * spent / ok, 3) if ok else float("nan"),
        # what the run left resident: calls in their last 32 s of transaction state,
        # and anything that should have been freed and was not
        "pss_mb_before": memory,
        "pss_mb_after": pss_mb(pids),
    }
    if len(services) > 1 and ok:
        found["cpu_ms_each_by_service"] = {
            name: round(1000 * (cpu_seconds([pid]) - each_before[pid]) / ok, 3)
            for pid, name in services.items()
        }
    return found


# a provider's call to a number (no credentials; the trunk is known by the Request-URI's
# host) that rings agent 1001, held one second: INVITE, 100, 180, 200, ACK, BYE, 200
TRUNK_NUMBER = "+17853178070"  # number-alice in config/resources/pstn.yaml
TRUNK_CALL = scenarios.did_call(TRUNK_NUMBER, "trunk.sip.local").replace(
    '<pause milliseconds="200"/>', '<pause milliseconds="1000"/>'
)

HELD = CALL.replace(
    '<pause milliseconds="1000"/>', f'<pause milliseconds="{HOLD_SECONDS * 1000}"/>'
)


def held_calls(server: Server, directory: Path) -> dict[str, float]:
    """Memory (PSS) per call in progress: HELD_RATE calls/s for HOLD_SECONDS, each held
    HOLD_SECONDS, so that about HELD_RATE * HOLD_SECONDS are up at once when it is read."""
    total = HELD_RATE * HOLD_SECONDS
    before = pss_mb(server.pids())
    result: list[tuple[int, int, float]] = []
    run = threading.Thread(
        target=lambda: result.append(
            _sipp(directory, "held", HELD, server.port, HELD_RATE, total, "1001", {}, [])
        )
    )
    run.start()
    time.sleep(HOLD_SECONDS + 0.5)  # every call placed, none hung up yet
    during = pss_mb(server.pids())
    run.join()
    ok, failed, _ = result[0] if result else (0, -1, 0.0)
    return {
        "calls_up": total,
        "successful": ok,
        "failed": failed,
        "pss_mb_before": before,
        "pss_mb_during": during,
        "kb_per_call_up": round(1024 * (during - before) / total, 1),
    }


def calls_key(rate: int) -> str:
    """The report's key of authenticated calls at ``rate`` calls/s."""
    return "calls" if rate == CALL_RATE else f"calls_{rate}"


def workloads(
    server: Server,
    directory: Path,
    call_rates: tuple[int, ...] = (CALL_RATE,),
    steps: bool = True,
    registers: bool = True,
) -> dict[str, object]:
    """Authenticated calls at each of ``call_rates``, trunk calls at the first of them,
    then the REGISTERs and the steps."""
    found: dict[str, object] = {}
    with callee(directory, server.port, ("1002", "1001")):  # 1001: the trunk's calls
        if steps:  # on the fresh server; then 32 s for what the calls leave to run out
            found["held_calls"] = held_calls(server, directory)
            print(f"  {server.name}: calls held: {found['held_calls']}", flush=True)
            settle()
        for rate in call_rates:
            key, total = calls_key(rate), rate * SECONDS
            found[key] = measured(
                server,
                functools.partial(
                    _sipp, directory, key, CALL, server.port, rate, total, "1001", {}, []
                ),
            )
            print(f"  {server.name}: calls at {rate}/s: {found[key]}", flush=True)
            settle()
        rate, total = call_rates[0], call_rates[0] * SECONDS
        found["trunk_calls"] = measured(
            server,
            lambda: _sipp(directory, "trunk", TRUNK_CALL, server.port, rate, total, "1001", {}, []),
        )
        print(f"  {server.name}: calls from a trunk: {found['trunk_calls']}", flush=True)
    # before the steps: the last step overloads the server, and what it leaves behind
    # (transactions and their timers, for 32 s and more) would be counted here
    for rate in REG_RATES if registers else []:
        settle()
        found[f"registers_{rate}"] = registered(server, directory, rate)
    if steps:
        with callee(directory, server.port):
            best = 0
            for rate in STEP_RATES:
                ok, failed, _ = _sipp(
                    directory,
                    f"step-{rate}",
                    CALL,
                    server.port,
                    rate,
                    rate * SECONDS,
                    "1001",
                    {},
                    [],
                )
                print(f"  {server.name}: {rate}/s: {ok} ok, {failed} failed", flush=True)
                if failed != 0 or ok != rate * SECONDS:
                    break
                best = rate
            found["highest_clean_call_rate"] = best
    return found


def settle() -> None:
    """Wait until what the last run left has ended (its transactions linger for Timer J, 32 s),
    so that the next run is not charged for it: digest REGISTERs at 300/s right after the
    calls cost the all-in-one 0.647 ms each, 0.427 after this wait, 0.397 on a fresh one."""
    time.sleep(TIMER_J + 3)


def registered(server: Server, directory: Path, rate: int) -> dict[str, object]:
    """Digest REGISTERs at ``rate`` for REG_SECONDS, measured and printed."""
    found = measured(server, registering(directory, server, rate))
    print(f"  {server.name}: REGISTERs at {rate}/s: {found}", flush=True)
    return found


def registering(directory: Path, server: Server, rate: int) -> Callable[[], tuple[int, int, float]]:
    xml = scenarios.register(200)
    total = rate * REG_SECONDS
    return lambda: _sipp(directory, f"reg-{rate}", xml, server.port, rate, total, "1001", {}, [])


# kamailio.cfg's {register_state}: t_newtran() before save() keeps the REGISTER's
# transaction, as sipgrid's registrar keeps it (for Timer J, 32 s over UDP; Kamailio's tm
# keeps it for its wait timer, 5 s)
STATEFUL_REGISTER = "if (!t_newtran()) { sl_reply_error(); exit; }"


@contextlib.contextmanager
def kamailio_server(directory: Path, stateful_register: bool = False) -> Iterator[Server]:
    """Kamailio with bench/kamailio.cfg. Its registrar answers statelessly, unless
    ``stateful_register``; then it gets 512 MB of shared memory, where the transactions
    live (with 64, at 2000 REGISTERs/s it ran out and refused half of them)."""
    template = KAMAILIO_CFG.read_text()
    state = STATEFUL_REGISTER if stateful_register else ""

    def write(cfg: Path) -> int:
        port = free_port()
        cfg.write_text(
            template.format(
                port=port,
                modules=KAMAILIO_MODULES,
                children=os.cpu_count() or 2,
                register_state=state,
            )
        )
        return port

    with kamailio(directory, write, shared_mb=512 if stateful_register else 64) as port:
        leader = _kamailio_leader(directory)
        yield Server("kamailio", port, lambda: group(leader))


@contextlib.contextmanager
def sipgrid_workers(directory: Path, count: int) -> Iterator[Server]:
    """The all-in-one as ``count`` workers on one port, bindings in Redis (database 13,
    emptied after); with 1, the same on Redis, so that the two differ by the workers."""
    import redis

    redis_location(directory, WORKERS_REDIS)
    env = {"SIPGRID_WORKERS": str(count)}
    try:
        with all_in_one(directory, edgeport={"localnets": ["127.0.0.1/8"]}, env=env) as one:
            top = one.processes[0].pid  # the supervisor, with more than one
            yield Server(f"{count} worker(s)", one.port, lambda: [top, *children(top)])
    finally:
        redis.Redis.from_url(WORKERS_REDIS).flushdb()


def _kamailio_leader(directory: Path) -> int:
    """The main Kamailio process: the one whose working directory (-Y) is ours."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command[0].endswith(b"kamailio") and str(directory).encode() in command:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[2])
    raise RuntimeError("kamailio is not running")


def heading() -> dict[str, object]:
    """What a report says of the machine and the load, before its figures."""
    return {
        "cpus": os.cpu_count(),
        "python": interpreter(),
        "seconds": SECONDS,
        "call_rate": CALL_RATE,
        "register_rates": REG_RATES,
    }


def main() -> None:
    report = heading()
    os.environ["SIPGRID_TEST_LOG_LEVEL"] = "warning"  # as a production server would log
    spec = {"edgeport": {"localnets": ["127.0.0.1/8"]}}
    work = Path(tempfile.mkdtemp(prefix="sipgrid-versus-"))
    try:
        print("kamailio:", flush=True)
        with kamailio_server(work / "kamailio") as server:
            report["kamailio"] = workloads(server, work / "kamailio", CALL_RATES)
        print("kamailio, its registrar stateful (t_newtran), as sipgrid's is:", flush=True)
        where = work / "kamailio-stateful"
        with kamailio_server(where, stateful_register=True) as server:
            report["kamailio_stateful_register"] = {
                f"registers_{rate}": registered(server, where, rate) for rate in REG_RATES
            }
        print("sipgrid all-in-one:", flush=True)
        with all_in_one(work / "one", **spec) as one:
            processes = list(one.processes)
            server = Server("sipgrid", one.port, lambda: [p.pid for p in processes])
            report["sipgrid"] = workloads(server, work / "one")
        print("sipgrid distributed:", flush=True)
        with distributed(work / "distributed", **spec) as grid:
            processes = list(grid.processes)  # EdgePort, Dispatcher, Connect, Location, APIServer
            server = Server("distributed", grid.port, lambda: [p.pid for p in processes])
            report["distributed"] = workloads(server, work / "distributed", CALL_RATES, steps=False)
        print("sipgrid distributed, gRPC streams without frames (SIPGRID_FRAMES=0):", flush=True)
        framed = ("edgeport", "dispatcher", "connect", "location")
        no_frames = {name: {"SIPGRID_FRAMES": "0"} for name in framed}
        with distributed(work / "grpc", service_env=no_frames, **spec) as grid:
            processes = list(grid.processes)
            server = Server("grpc", grid.port, lambda: [p.pid for p in processes])
            report["distributed_grpc"] = workloads(
                server, work / "grpc", (DISTRIBUTED_CALL_RATE,), steps=False, registers=False
            )
        print("sipgrid distributed, unary calls (SIPGRID_STREAMS=0):", flush=True)
        unary = {name: {"SIPGRID_STREAMS": "0"} for name in ("edgeport", "dispatcher", "connect")}
        with distributed(work / "unary", service_env=unary, **spec) as grid:
            processes = list(grid.processes)
            server = Server("unary", grid.port, lambda: [p.pid for p in processes])
            report["distributed_unary"] = workloads(
                server, work / "unary", (DISTRIBUTED_CALL_RATE,), steps=False, registers=False
            )
        for count in WORKER_COUNTS:
            print(f"sipgrid all-in-one, {count} worker(s), bindings in Redis:", flush=True)
            where = work / f"workers-{count}"
            with sipgrid_workers(where, count) as server:
                report[f"workers_{count}"] = workloads(server, where)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["ratios"] = ratios(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"written to {RESULTS}")


def _cpu(report: dict[str, object], server: str, key: str) -> float:
    found = report.get(server)
    if not isinstance(found, dict) or not isinstance(found.get(key), dict):
        return float("nan")
    return float(found[key]["cpu_ms_each"])


def _figure(report: dict[str, object], server: str, run: str, key: str) -> str:
    found = report.get(server)
    if not isinstance(found, dict) or not isinstance(found.get(run), dict):
        return "nan"
    return str(found[run].get(key, "nan"))


def ratios(report: dict[str, object]) -> dict[str, float]:
    keys = ["calls", "trunk_calls", *(f"registers_{rate}" for rate in REG_RATES)]
    found = {
        f"{key}_sipgrid_over_kamailio": round(
            _cpu(report, "sipgrid", key) / _cpu(report, "kamailio", key), 2
        )
        for key in keys
    }
    for rate in REG_RATES:
        key = f"registers_{rate}"
        found[f"{key}_sipgrid_over_kamailio_stateful_register"] = round(
            _cpu(report, "sipgrid", key) / _cpu(report, "kamailio_stateful_register", key), 2
        )
    for wiring, rate in _distributed_runs():
        key, name = calls_key(rate), f"{wiring}_{rate}" if rate != CALL_RATE else wiring
        found[f"calls_{name}_over_kamailio"] = round(
            _cpu(report, wiring, key) / _cpu(report, "kamailio", key), 2
        )
    # what the split into processes costs, whatever the day's machine does to Kamailio
    found["calls_distributed_over_all_in_one"] = round(
        _cpu(report, "distributed", "calls") / _cpu(report, "sipgrid", "calls"), 2
    )
    return found


def _distributed_runs() -> list[tuple[str, int]]:
    """The distributed wiring's runs of calls, and their rates (Kamailio's at each)."""
    return [
        *(("distributed", rate) for rate in CALL_RATES),
        ("distributed_grpc", DISTRIBUTED_CALL_RATE),
        ("distributed_unary", DISTRIBUTED_CALL_RATE),
    ]


def _not_held(report: dict[str, object], key: str) -> str:
    """A note when a server took a tenth longer than the run was meant to last, and more
    than the last call's length: it did not hold the rate, and its CPU per message is that
    of an overloaded server, which reads several messages per wake-up."""
    planned = REG_SECONDS if key.startswith("registers_") else SECONDS
    late = [
        f"{name} {found[key]['seconds']} s"
        for name in ("kamailio", "sipgrid")
        if isinstance(found := report.get(name), dict)
        and isinstance(found.get(key), dict)
        and float(found[key]["seconds"]) > 1.1 * planned + 1.5  # a call lasts 1 s
    ]
    return f" (not held: {', '.join(late)} for {planned} s)" if late else ""


def table(report: dict[str, object]) -> str:
    rows = [("", "kamailio", "sipgrid", "ratio")]
    stateful = ", Kamailio's registrar stateful"
    for peer, key, label in (
        ("kamailio", "calls", f"CPU ms per call at {report['call_rate']}/s"),
        ("kamailio", "trunk_calls", f"CPU ms per call from a trunk at {report['call_rate']}/s"),
        *(("kamailio", f"registers_{r}", f"CPU ms per REGISTER at {r}/s") for r in REG_RATES),
        *(
            (
                "kamailio_stateful_register",
                f"registers_{r}",
                f"CPU ms per REGISTER at {r}/s{stateful}",
            )
            for r in REG_RATES
        ),
    ):
        k, s = _cpu(report, peer, key), _cpu(report, "sipgrid", key)
        held = _not_held(report, key) if peer == "kamailio" else ""
        rows.append((label + held, f"{k:.3f}", f"{s:.3f}", f"{s / k:.2f}"))
    best = {
        name: found.get("highest_clean_call_rate", 0) if isinstance(found, dict) else 0
        for name, found in ((n, report.get(n)) for n in ("kamailio", "sipgrid"))
    }
    rows.append(("highest clean calls/s", str(best["kamailio"]), str(best["sipgrid"]), ""))
    for label, run, key in (
        ("memory (PSS) MB after the calls", "calls", "pss_mb_after"),
        (
            f"memory (PSS) KB per call up ({HELD_RATE * HOLD_SECONDS} up)",
            "held_calls",
            "kb_per_call_up",
        ),
    ):
        rows.append(
            (label, _figure(report, "kamailio", run, key), _figure(report, "sipgrid", run, key), "")
        )
    for wiring, rate in _distributed_runs():
        how = {"distributed_unary": ", unary calls", "distributed_grpc": ", no frames"}.get(
            wiring, ""
        )
        k, d = _cpu(report, "kamailio", calls_key(rate)), _cpu(report, wiring, calls_key(rate))
        rows.append(
            (
                f"distributed{how} CPU ms per call at {rate}/s",
                f"{k:.3f}",
                f"{d:.3f}",
                f"{d / k:.2f}",
            )
        )
    # past its capacity (2000/s is, on two cores): how many exchanges the wiring still
    # completes, and what each cost it, the refused ones' work included
    for rate in REG_RATES:
        key = f"registers_{rate}"
        k, d = _cpu(report, "kamailio", key), _cpu(report, "distributed", key)
        label = f"distributed: REGISTERs at {rate}/s completed of {rate * REG_SECONDS}"
        done = [_figure(report, name, key, "successful") for name in ("kamailio", "distributed")]
        rows.append((label, done[0], done[1], ""))
        rows.append(
            (f"distributed CPU ms per REGISTER at {rate}/s", f"{k:.3f}", f"{d:.3f}", f"{d / k:.2f}")
        )
    d, s = _cpu(report, "distributed", "calls"), _cpu(report, "sipgrid", "calls")
    rows.append(
        (
            f"distributed over the all-in-one, CPU per call at {report['call_rate']}/s",
            "",
            "",
            f"{d / s:.2f}",
        )
    )
    k = _cpu(report, "kamailio", "calls")
    for count in WORKER_COUNTS:
        found = report.get(f"workers_{count}")
        if not isinstance(found, dict):
            continue
        w = _cpu(report, f"workers_{count}", "calls")
        rows.append(
            (
                f"{count} worker(s), Redis: CPU ms per call at {report['call_rate']}/s",
                "",
                f"{w:.3f}",
                f"{w / k:.2f}",
            )
        )
        rows.append(
            (
                f"{count} worker(s), Redis: highest clean calls/s",
                "",
                str(found.get("highest_clean_call_rate", 0)),
                "",
            )
        )
        # one AOR's REGISTERs: the workers' writes of it race in Redis (bench/README.md)
        for rate in REG_RATES:
            key, name = f"registers_{rate}", f"workers_{count}"
            if key not in found:  # a report from before these runs
                continue
            completed = _figure(report, name, key, "successful")
            label = f"{count} worker(s), Redis: REGISTERs at {rate}/s completed of"
            rows.append((f"{label} {rate * REG_SECONDS}", "", completed, ""))
            kr, wr = _cpu(report, "kamailio", key), _cpu(report, name, key)
            label = f"{count} worker(s), Redis: CPU ms per REGISTER at {rate}/s"
            rows.append((label, f"{kr:.3f}", f"{wr:.3f}", f"{wr / kr:.2f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]:>9}  {r[2]:>9}  {r[3]:>6}" for r in rows]
    return "\n".join(
        [f"sipgrid on {report.get('python', 'an unrecorded Python')}", *lines, *_by_service(report)]
    )


def _by_service(report: dict[str, object]) -> list[str]:
    """Where the distributed wiring's CPU per call goes, service by service."""
    lines = []
    for wiring, rate in _distributed_runs():
        found = report.get(wiring)
        run = found.get(calls_key(rate)) if isinstance(found, dict) else None
        split = run.get("cpu_ms_each_by_service") if isinstance(run, dict) else None
        if isinstance(split, dict):
            parts = ", ".join(f"{name} {ms:.3f}" for name, ms in split.items())
            lines.append(f"{wiring.replace('_', ', ')} at {rate}/s, CPU ms per call: {parts}")
    return lines


if __name__ == "__main__":
    main()
