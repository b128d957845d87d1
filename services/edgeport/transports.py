"""The transport shells: they move bytes between sockets and the EdgePort, nothing more.

A :class:`Flow` is where a message came from and where its answers go: an address on
our UDP socket, or one TCP connection. Its ``id`` ("tcp:192.0.2.1:5070") is what the
processor gets in metadata and may hand back as a destination.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from sipgrid.api.types import NetInterface, Transport
from sipgrid.sip import PONG, KeepAlivePing, ParseError, StreamFramer

if TYPE_CHECKING:
    from .server import EdgePort


def flow_id(transport: Transport, host: str, port: int) -> str:
    return f"{transport.value}:{host}:{port}"


def parse_flow_id(text: str) -> NetInterface:
    """ "udp:host:port" (an IPv6 host keeps its colons) to a NetInterface."""
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    return NetInterface(host.strip("[]"), int(port), Transport.parse(transport))


class Flow(Protocol):
    id: str
    transport: Transport
    remote: tuple[str, int]

    def send(self, data: bytes) -> None: ...


class UdpFlow:
    __slots__ = ("_socket", "id", "remote", "transport")

    def __init__(self, socket: asyncio.DatagramTransport, remote: tuple[str, int]) -> None:
        self._socket = socket
        self.remote = remote
        self.transport = Transport.UDP
        self.id = flow_id(Transport.UDP, remote[0], remote[1])

    def send(self, data: bytes) -> None:
        self._socket.sendto(data, self.remote)


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP listening point."""

    def __init__(self, edgeport: EdgePort) -> None:
        self.edgeport = edgeport
        self.socket: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.socket = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.socket is not None
        self.edgeport.on_datagram(data, UdpFlow(self.socket, (addr[0], addr[1])))

    def flow_to(self, host: str, port: int) -> UdpFlow:
        assert self.socket is not None
        return UdpFlow(self.socket, (host, port))


class TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened; CRLF CRLF pings are answered here."""

    def __init__(self, edgeport: EdgePort) -> None:
        self.edgeport = edgeport
        self.framer = StreamFramer(edgeport.max_message_size)
        self.transport = Transport.TCP
        self.remote: tuple[str, int] = ("", 0)
        self.id = ""
        self._socket: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.remote = (host, port)
        self.id = flow_id(Transport.TCP, host, port)
        self.edgeport.flow_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.edgeport.flow_closed(self)

    def data_received(self, data: bytes) -> None:
        self.framer.feed(data)
        while True:
            try:
                event = self.framer.next_event()
            except ParseError as error:
                self.edgeport.on_stream_error(error, self)
                self.close()
                return
            if event is None:
                return
            if isinstance(event, KeepAlivePing):
                self.send(PONG)
            else:
                self.edgeport.on_message(event, self)

    def send(self, data: bytes) -> None:
        if self._socket is not None and not self._socket.is_closing():
            self._socket.write(data)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
