"""Out of file descriptors: new TCP clients are refused, and the EdgePort says so once
(before, clients saw resets and the log said nothing). The EdgePort runs in a child
process with a low descriptor limit; the test opens connections until it is full."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from .helpers import ROOT

CHILD = """
import asyncio, logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from tests.services.helpers import connect_processor, edgeport_config
from sipgrid.services.edgeport.server import EdgePort

async def main():
    edgeport = EdgePort(edgeport_config(0), connect_processor())
    await edgeport.start()
    print(edgeport.listening_points[0].port, flush=True)
    await asyncio.sleep(30)

asyncio.run(main())
"""


def test_running_out_of_descriptors_is_logged_once() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        for _ in range(80):  # well past 48 descriptors in the child
            client = socket.create_connection(("127.0.0.1", port), timeout=2)
            clients.append(client)
        time.sleep(2.5)  # asyncio retries accept() once a second
    finally:
        for client in clients:
            client.close()
        child.kill()
        _, err = child.communicate(timeout=10)
    lines = [line for line in err.splitlines() if "out of file descriptors" in line]
    assert len(lines) == 1, err[-3000:]
    assert "limit 48" in lines[0] and "Traceback" not in err, err[-3000:]
