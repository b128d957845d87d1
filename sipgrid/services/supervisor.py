"""SIPGRID_WORKERS=N: N processes of one service (``sipgrid run`` or ``sipgrid serve
edgeport``) on one SIP port, started and stopped together.

Each worker is the same command with SIPGRID_WORKER set (its number, how many, its
hand-off socket, every worker's hand-off port); how they share the port and hand messages
to each other is in ``edgeport/workers.py``. The supervisor opens the hand-off sockets
once and keeps them, so that a worker started again gets its port back. Worker 0 starts
first and alone: it migrates the database, makes the key files and applies the resource
files, and only it serves the APIs, the metrics, the Location port and the trunks'
registrations. The others start once it says it serves, and read the same store. The supervisor gives every worker one nonce key (unless SIPGRID_NONCE_KEY is set), so
that a nonce or a Record-Route signature made by one worker holds in another.

A signal to the supervisor goes to every worker (each drains its calls). A worker that
ends by itself is started again, unless it ran for less than STEADY seconds (a bad config,
a port taken, a crash at start): then the others are stopped too, and the supervisor ends
with its exit code.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from .edgeport.workers import UP, WorkerPlace, handoff_socket
from .settings import Settings

START_TIMEOUT = 60.0  # seconds for one worker to say it serves
POLL = 0.1
STEADY = 5.0  # seconds: a worker that ends sooner after its start stops them all


def supervise(settings: Settings, args: list[str]) -> int:
    """Run ``sipgrid <args>`` as settings.workers workers; the exit code to end with."""
    count = settings.workers
    sockets = [handoff_socket() for _ in range(count + 1)]  # each worker's, then ours
    ports = tuple(sock.getsockname()[1] for sock in sockets)
    control = sockets[count]
    control.settimeout(POLL)
    env = dict(os.environ)
    if not settings.nonce_key:
        env["SIPGRID_NONCE_KEY"] = secrets.token_hex(32)
    workers: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:  # a second signal is passed on too: stop at once
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        place = WorkerPlace(index, count, sockets[index].fileno(), ports)
        return subprocess.Popen(
            [sys.executable, "-m", "sipgrid.cli", *args],
            env={**env, "SIPGRID_WORKER": str(place)},
            pass_fds=(place.fd,),
        )

    for index in range(count):
        workers.append(start(index))
        if not _came_up(control, ports[index], index, workers[-1]) or stopping:
            return _end(workers, workers[-1], index, stopping)
    print(f"sipgrid: ready; {count} workers share the SIP port", flush=True)
    started = [time.monotonic()] * count
    while True:
        for index, worker in enumerate(workers):
            if worker.poll() is None:
                continue
            if stopping or time.monotonic() - started[index] < STEADY:
                return _end(workers, worker, index, stopping)
            print(
                f"sipgrid: worker {index} ended with exit code {worker.returncode}; "
                "starting it again",
                file=sys.stderr,
                flush=True,
            )
            workers[index], started[index] = start(index), time.monotonic()
        time.sleep(POLL)


def _came_up(
    control: socket.socket, port: int, index: int, worker: subprocess.Popen[bytes]
) -> bool:
    """Wait for the worker to say it serves (UP, from its hand-off port)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            said, sender = control.recvfrom(64)
        except TimeoutError:
            said, sender = b"", ("", 0)
        if said == UP and sender[1] == port:
            return True
        if worker.poll() is not None:
            return False
    print(f"sipgrid: worker {index} did not start in {START_TIMEOUT:.0f} s", file=sys.stderr)
    return False


def _end(
    workers: list[subprocess.Popen[bytes]],
    first: subprocess.Popen[bytes],
    index: int,
    asked: bool = False,
) -> int:
    """Stop every worker. Asked to stop: 0; else the exit code of the worker that ended
    first (1 when it ended with 0, or had not ended)."""
    if not asked and first.poll() is not None:
        print(
            f"sipgrid: worker {index} ended with exit code {first.returncode}; stopping the others",
            file=sys.stderr,
            flush=True,
        )
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait()
    if asked:
        return 0
    return first.returncode if first.returncode and first.returncode > 0 else 1
