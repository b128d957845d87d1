"""In-process services on loopback sockets, driven by a test's own asyncio loop."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from sipgrid.api.types import MessageRequest, MessageResponse, Processor, Route
from sipgrid.services.connect.processor import ConnectProcessor
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.edgeport.config import EdgePortConfig
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.location.service import MemoryLocation
from sipgrid.sip import Response, parse

ROOT = Path(__file__).resolve().parents[2]


def edgeport_config(port: int, **spec: Any) -> EdgePortConfig:
    base: dict[str, Any] = {
        "bindAddr": "127.0.0.1",
        "processor": {"addr": "127.0.0.1:51904"},
        "transport": [{"protocol": "udp", "port": port}, {"protocol": "tcp", "port": port}],
    }
    base.update(spec)
    return EdgePortConfig.model_validate({"kind": "EdgePort", "ref": "edgeport-test", "spec": base})


def connect_processor() -> ConnectProcessor:
    return ConnectProcessor(load_resources(ROOT / "config" / "resources"), MemoryLocation())


class CountingProcessor:
    """Counts what reaches the processor, by method, then delegates."""

    def __init__(self, inner: Processor) -> None:
        self.inner = inner
        self.handles_responses = inner.handles_responses
        self.count: Counter[str] = Counter()

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        self.count[request.method] += 1
        return await self.inner.process_message(request)


class FailingProcessor:
    handles_responses = True

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        raise RuntimeError("boom")


class UdpPeer(asyncio.DatagramProtocol):
    """A UDP socket on loopback that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def response(self, timeout: float = 2.0) -> Response:
        message = parse(await self.recv(timeout))
        assert isinstance(message, Response)
        return message

    async def status_line(self, timeout: float = 2.0) -> tuple[int, str]:
        """The status and reason of the next answer, read without the full parser (an
        answer to a malformed request may carry that request's malformed Via)."""
        line = (await self.recv(timeout)).split(b"\r\n", 1)[0].decode()
        _, status, reason = line.split(" ", 2)
        return int(status), reason

    async def nothing(self, timeout: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def udp_peer() -> UdpPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    return peer


def request_bytes(
    method: str,
    peer_port: int,
    *,
    branch: str = "z9hG4bKt1",
    uri: str = "sip:1002@sip.local",
    extra: str = "",
    max_forwards: int = 70,
    call_id: str = "c1",
) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer_port};branch={branch};rport\r\n"
        f"From: <sip:1001@sip.local>;tag=f1\r\n"
        f"To: <sip:1002@sip.local>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"{extra}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


async def started(edgeport: EdgePort) -> EdgePort:
    await edgeport.start()
    return edgeport


async def serving(processor: Processor, **spec: Any) -> tuple[EdgePort, int]:
    """An EdgePort on UDP and TCP of one free port (bound on port 0, no race), and that port."""
    edgeport = EdgePort(edgeport_config(0, **spec), processor)
    await edgeport.start()
    return edgeport, edgeport.listening_points[0].port


class Noted:
    """A Location that notes each AOR looked up (find_routes), and which of its calls
    that change bindings were made (``changes``), and does the rest as its own."""

    def __init__(self, location: MemoryLocation) -> None:
        self._location = location
        self.finds: list[str] = []
        self.changes: list[str] = []

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        self.finds.append(aor)
        return await self._location.find_routes(aor, call_id, labels)

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        self.changes.append("add_route")
        await self._location.add_route(aor, route, max_contacts)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        self.changes.append("add_route_and_find")
        return await self._location.add_route_and_find(aor, route, max_contacts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._location, name)
