"""Instructions the live all-in-one executes per digest REGISTER exchange and per call.

CPU time on these machines swings by 20 % from run to run, so a change that saves 5 %
cannot be shown by timing the server (bench/README.md). The number of instructions it
executes for the same work can: valgrind's callgrind counts them, and runs of the same
code agreed within 1 % (bench/README.md). So this is the figure for comparing two
versions of sipgrid's own code, before and after a change; it is not a figure of speed (one
instruction that misses the caches costs as much as a hundred that do not; bench.cold
shows how much that matters here), and it is not compared with Kamailio's (see below).

What it does: the all-in-one (example config, SQLite, bindings in memory) runs under
callgrind with counting off while it starts; counting is turned on (``callgrind_control``),
20 exchanges (or calls) warm it, their transactions end (35 s, as bench.versus waits), the
count is zeroed, then ``BENCH_INSTR_REGISTERS`` exchanges at 20 a second, or
``BENCH_INSTR_CALLS`` calls at 10 a second (sipp, as in bench.versus, told not to
retransmit), are counted; then the server is counted as long again with no traffic, and
the report gives each figure with and without that idle count (what the server does each
second whatever its load). Every thread of the process is counted, the event loop's waiting
included. ``BENCH_INSTR_KEEP`` names a folder to keep
callgrind's files in (for callgrind_annotate).
The rates are low because the server runs many times slower under valgrind; the
count per exchange does not depend on the rate except for what is done per second
(the save of changed bindings, the reads of the store's revision and of the bans),
which the figure less the idle count leaves out.

Kamailio is not counted here: callgrind_control does not reach the workers it forks,
and in bench/kamailio.cfg its own memory allocator's search for a free block
(``qm_malloc``) took 87 % of the busiest worker's instructions in a run of calls: its
counts say little of its time. Figures go to bench/results/instructions.json; `make bench` runs this (3 minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.sip_load import CALL, _sipp, callee
from bench.versus import interpreter, settle
from tests.e2e import scenarios
from tests.e2e.harness import all_in_one

RESULTS = Path(__file__).resolve().parent / "results" / "instructions.json"
REGISTERS = int(os.environ.get("BENCH_INSTR_REGISTERS", "200"))
CALLS = int(os.environ.get("BENCH_INSTR_CALLS", "100"))
# a folder to keep callgrind's files in, for callgrind_annotate
KEEP = os.environ.get("BENCH_INSTR_KEEP")
REGISTER_RATE, CALL_RATE, WARM = 20, 10, 20


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def _count(directory: Path, kind: str) -> dict[str, float]:
    """Instructions per exchange (``register``) or per call (``call``), one server."""
    out = directory / f"callgrind-{kind}.out"
    under = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    )
    server_dir = directory / kind
    server_dir.mkdir()
    started = time.monotonic()
    with all_in_one(server_dir, edgeport={"localnets": ["127.0.0.1/8"]}, under=under) as one:
        pid = str(one.processes[0].pid)
        if kind == "register":
            flow, rate, total = scenarios.register(200), REGISTER_RATE, REGISTERS
            peer: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        else:  # calls need a callee registered through the server
            flow, rate, total = CALL, CALL_RATE, CALLS
            peer = callee(server_dir, one.port)
        with peer:
            # Counting goes on before the warm-up: valgrind then translates the code
            # again, with counting in it, and the server runs far slower for a few
            # seconds; counted, those exchanges had retransmissions in them (in one run
            # 264 of 664 REGISTERs), and calls failed. -nr: sipp does not retransmit,
            # so that the count is of the exchanges alone.
            _control("--instr=on", pid)
            _sipp(server_dir, "warm", flow, one.port, rate, WARM, "1001", {}, ["-nr"])
            # The warm-up's transactions end on their timers 32 s later (Timer J): counted,
            # they made a run 1 to 2 % dearer per call than one in which something had
            # delayed the count past them (session 15). Counted runs now start after them.
            settle()
            _control("--zero", pid)
            ok, failed, elapsed = _sipp(
                server_dir, kind, flow, one.port, rate, total, "1001", {}, ["-nr"]
            )
            _control("--dump", pid)  # <out>.1: the run (a dump zeroes the count)
            # What the server does each second whatever its load, counted as long again
            # with no traffic (its transactions end 32 s on, after this): at 20
            # exchanges a second it was a sixth of the count (session 25), where at
            # 2000/s it is under 1 %.
            time.sleep(elapsed)
            _control("--dump", pid)  # <out>.2: idle
            _control("--instr=off", pid)
    counted, idle = _totals(out, 1), _totals(out, 2)
    if KEEP:
        Path(KEEP).mkdir(parents=True, exist_ok=True)
        for path in out.parent.glob(out.name + "*"):
            shutil.copy(path, Path(KEEP) / path.name)
    print(
        f"  {kind}: {counted / max(ok, 1):,.0f} instructions each, "
        f"{(counted - idle) / max(ok, 1):,.0f} less what an idle server does as long "
        f"({ok} done, {failed} failed, {time.monotonic() - started:.0f} s)",
        flush=True,
    )
    return {
        "done": ok,
        "failed": failed,
        "instructions_each": round(counted / max(ok, 1)),
        "idle_instructions_per_second": round(idle / elapsed),
        "instructions_each_less_idle": round((counted - idle) / max(ok, 1)),
    }


def _totals(out: Path, dump: int) -> int:
    """The instructions of callgrind's ``dump``-th dump (``<out>.<dump>``: what was
    counted since the one before, or since --zero)."""
    for line in out.with_name(f"{out.name}.{dump}").read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"callgrind's dump {dump} of {out} has no totals")


def main() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench.instructions: valgrind is missing (make bench installs it)")
    os.environ["SIPGRID_TEST_LOG_LEVEL"] = "warning"  # as a production server would log
    print("instructions per exchange and per call (callgrind):", flush=True)
    with tempfile.TemporaryDirectory(prefix="sipgrid-instructions-") as work:
        report = {
            "unit": "instructions executed by the all-in-one's process (every thread)",
            # counts on one interpreter are not comparable with another's
            "python": interpreter(),
            "register_rate": REGISTER_RATE,
            "call_rate": CALL_RATE,
            "register_exchange": _count(Path(work), "register"),
            "call": _count(Path(work), "call"),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
