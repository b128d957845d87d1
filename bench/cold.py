"""What a quiet server pays: the same work hot, and cold.

Three jobs, each done many times in one process with nothing else running in it:
- ``parse``: read the INVITE of a call never seen before (bench.parser_bench's messages);
- ``register``: a digest REGISTER exchange through the Connect registrar of the example
  config, in memory (REGISTER, 401, REGISTER with credentials, 200), each exchange with a
  Call-ID of its own;
- ``edge_register``: the same exchange from bytes in to bytes out, as the all-in-one does
  it without its sockets and event loop: the EdgePort's core parses each REGISTER, keeps
  its transaction, hands it to the same registrar and serializes the answer.

Each job is timed with ``time.thread_time`` around the job alone, in these conditions:
- ``hot``: back to back, so the CPU's caches still hold the last run's code and data;
- ``idle_<gap>ms``: the process sleeps that long before each message, as a server sleeps
  between the messages of a quiet minute;
- ``evicted_<size>mb``: the process writes over that much of other memory before each message,
  as other processes on the same cores do (sipp, the kernel, other guests of the host).

At 300 REGISTER exchanges a second the all-in-one sleeps a millisecond or more before most
messages: its live cost per message is what the cold rows show, not the hot one.
Kamailio, a small C loop, has less to bring back into the caches. The collector is tuned as
the all-in-one tunes it. Figures go to bench/results/cold.json; `make bench` runs this.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.parser_bench import call_messages
from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.connect.auth import Authenticator
from sipgrid.services.connect.processor import ConnectProcessor
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.edgeport.config import DEFAULT_METHODS
from sipgrid.services.edgeport.core import CoreSettings, EdgePortCore, Process, Transmit
from sipgrid.services.location.service import MemoryLocation
from sipgrid.services.serve import tune_gc
from sipgrid.sip import Request, Response, parse
from sipgrid.sip.digest import authorization_for

RESULTS = Path(__file__).resolve().parent / "results" / "cold.json"
RESOURCES = Path(__file__).resolve().parents[1] / "config" / "resources"
JOBS = int(os.environ.get("BENCH_COLD_JOBS", "1500"))
US = NetInterface("127.0.0.1", 5060, Transport.UDP)
AGENT = NetInterface("127.0.0.1", 7001, Transport.UDP)
PASSWORD = "1001-secret"  # agent 1001's in config/resources


def sleeping(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def evicting(size: int) -> Callable[[], None]:
    """Write a byte in every cache line of ``size`` bytes: the caches then hold those
    lines instead of what ran before. (Neither a copy nor a scan does it as surely: a large
    memcpy writes around the caches, and this CPU's last level keeps what the levels above
    it let go, not what was read.)"""
    memory = bytearray(size)
    lines = bytes(len(range(0, size, 64)))

    def write() -> None:
        memory[::64] = lines

    return write


def conditions() -> list[tuple[str, Callable[[], None]]]:
    found: list[tuple[str, Callable[[], None]]] = [("hot", lambda: None)]
    found += [(f"idle_{gap}ms", sleeping(gap / 1000)) for gap in (0.1, 0.5, 1.5)]
    found += [(f"evicted_{size}mb", evicting(size << 20)) for size in (4, 40)]
    return found


def _done(coroutine: Coroutine[Any, Any, MessageResponse]) -> MessageResponse:
    """Run a coroutine that never waits (the registrar in memory) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the registrar waited")


def _register_bytes(n: int, seq: int, credentials: str = "") -> bytes:
    return (
        "REGISTER sip:sip.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bK-{n}-{seq}\r\n"
        f"From: <sip:1001@sip.local>;tag={n}f\r\nTo: <sip:1001@sip.local>\r\n"
        f"Call-ID: {n}-reg@127.0.0.1\r\nCSeq: {seq} REGISTER\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:1001@127.0.0.1:7001>\r\nExpires: 60\r\n{credentials}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _register(n: int, seq: int) -> MessageRequest:
    return MessageRequest(
        ref=str(n),
        edge_port_ref="bench",
        method="REGISTER",
        sender=AGENT,
        listening_points=[US],
        message=parse(_register_bytes(n, seq)),
    )


def _credentials(n: int, challenged: Response) -> tuple[str, str]:
    """The Authorization header (name, value) that answers the 401 to exchange ``n``."""
    request = parse(_register_bytes(n, 2))
    assert isinstance(request, Request) and challenged.status == 401, challenged
    header = authorization_for(request, challenged, "1001", PASSWORD)
    assert header is not None
    return header


class Edge:
    """The EdgePort's core with the registrar behind it, without sockets or an event loop."""

    def __init__(self, processor: ConnectProcessor) -> None:
        settings = CoreSettings(
            ref="bench",
            listening_points=[US],
            methods=frozenset(DEFAULT_METHODS),
            handles_responses=False,
        )
        self.core = EdgePortCore(settings)
        self.processor = processor

    def datagram(self, data: bytes) -> list[bytes]:
        """What the all-in-one sends for one datagram it reads."""
        now = time.monotonic()
        sent: list[bytes] = []
        pending = list(self.core.receive_datagram(data, AGENT, now))
        while pending:
            action = pending.pop(0)
            if isinstance(action, Transmit):
                sent.append(action.data)
            elif isinstance(action, Process):
                answer = _done(self.processor.process_message(action.request))
                pending += self.core.processor_answered(action.job, answer, now)
        return sent


class Jobs:
    """Fresh work for each job, made outside the time measured."""

    def __init__(self) -> None:
        clock = time.time
        self.processor = ConnectProcessor(
            load_resources(RESOURCES),
            MemoryLocation(clock),
            Authenticator(b"k" * 32, clock=clock),
            clock=clock,
        )
        self.edge = Edge(self.processor)
        self.n = 0

    def parse(self, before: Callable[[], None]) -> float:
        """Each call's first INVITE: new Call-ID, tags and branch every time."""
        self.n += 1
        data = call_messages(self.n)[0]
        return timed(before, lambda: parse(data))

    def register(self, before: Callable[[], None]) -> float:
        self.n += 1
        first = _register(self.n, 1)
        answers: list[MessageResponse] = []
        spent = timed(before, lambda: answers.append(_done(self.processor.process_message(first))))
        challenged = answers[0].message
        assert isinstance(challenged, Response)
        second = _register(self.n, 2)
        assert isinstance(second.message, Request)
        second.message.add(*_credentials(self.n, challenged))
        spent += timed(
            before, lambda: answers.append(_done(self.processor.process_message(second)))
        )
        ok = answers[1].message
        assert isinstance(ok, Response) and ok.status == 200, ok
        return spent

    def edge_register(self, before: Callable[[], None]) -> float:
        self.n += 1
        self.edge.core.handle_timers(time.monotonic())  # transactions end as in the server
        first = _register_bytes(self.n, 1)
        sent: list[bytes] = []
        spent = timed(before, lambda: sent.extend(self.edge.datagram(first)))
        challenged = parse(sent[0])
        assert isinstance(challenged, Response)
        name, value = _credentials(self.n, challenged)
        second = _register_bytes(self.n, 2, f"{name}: {value}\r\n")
        spent += timed(before, lambda: sent.extend(self.edge.datagram(second)))
        ok = parse(sent[1])
        assert isinstance(ok, Response) and ok.status == 200, ok
        return spent


def timed(before: Callable[[], None], step: Callable[[], object]) -> float:
    """CPU seconds of ``step`` alone, done after ``before``."""
    before()
    started = time.thread_time()
    step()
    return time.thread_time() - started


def measure() -> dict[str, dict[str, float]]:
    jobs = Jobs()
    for _ in range(200):  # the memos and the interpreter's own caches filled first
        jobs.parse(lambda: None)
        jobs.register(lambda: None)
        jobs.edge_register(lambda: None)
    found: dict[str, dict[str, float]] = {}
    for name, before in conditions():
        count = JOBS // 5 if name == "evicted_40mb" else JOBS
        parse_spent = sum(jobs.parse(before) for _ in range(count))
        register_spent = sum(jobs.register(before) for _ in range(count))
        edge_spent = sum(jobs.edge_register(before) for _ in range(count))
        found[name] = {
            "parse_us": round(1e6 * parse_spent / count, 1),
            "register_exchange_us": round(1e6 * register_spent / count, 1),
            "edge_register_exchange_us": round(1e6 * edge_spent / count, 1),
        }
        print(f"  {name:14s} {found[name]}", flush=True)
    return found


def main() -> None:
    tune_gc()  # as the all-in-one does at start: the collector's cost as in the server
    print("the same work, hot and cold (CPU per job):", flush=True)
    found = measure()
    hot = found["hot"]
    report = {
        "jobs": JOBS,
        "unit": "microseconds of CPU per job (thread_time), the waiting or copying not counted",
        **found,
        "times_hot": {
            name: {k: round(v / hot[k], 2) for k, v in row.items()} for name, row in found.items()
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
