"""The transport shells for TCP and TLS: they move bytes between sockets and the
EdgePort, nothing more (UDP's is in carrier.py, compiled; WebSocket's in websocket.py).

A flow is named by its transport and remote address (a NetInterface): a UDP source, or
one connection. Shells report what arrives and when a connection opens or closes; the
core decides everything else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sipgrid.api.types import NetInterface, Transport
from sipgrid.sip import PONG, KeepAlivePing, ParseError, Request, Response, StreamFramer

log = logging.getLogger("sipgrid.edgeport")


class Sink(Protocol):
    """What a shell reports to (the EdgePort)."""

    max_message_size: int

    def datagram_received(self, data: bytes, flow: NetInterface) -> None: ...

    def message_received(self, message: Request | Response, flow: NetInterface) -> None: ...

    def stream_failed(self, error: ParseError, flow: NetInterface) -> None: ...

    def connection_opened(self, flow: NetInterface, connection: Connection) -> None: ...

    def connection_closed(self, flow: NetInterface, connection: Connection) -> None: ...


class Connection(Protocol):
    """A connection a flow names: TCP, TLS or WebSocket."""

    def send(self, data: bytes) -> bool: ...

    def close(self) -> None: ...


class StreamShell(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened; CRLF CRLF pings are answered here
    (RFC 5626 section 3.5.1), messages framed by Content-Length (RFC 3261 section 18.3)."""

    def __init__(self, sink: Sink, transport: Transport) -> None:
        self.sink = sink
        self.kind = transport
        self.framer = StreamFramer(sink.max_message_size)
        self.flow = NetInterface("", 0, transport)
        self._socket: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.flow = NetInterface(host, port, self.kind)
        self.sink.connection_opened(self.flow, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.connection_closed(self.flow, self)

    def data_received(self, data: bytes) -> None:
        self.framer.feed(data)
        while True:
            try:
                event = self.framer.next_event()
            except ParseError as error:
                self.sink.stream_failed(error, self.flow)
                return
            if event is None:
                return
            if isinstance(event, KeepAlivePing):
                self.send(PONG)
            else:
                self.sink.message_received(event, self.flow)

    def send(self, data: bytes) -> bool:
        """False when the connection is closing or gone: the caller falls back."""
        if self._socket is None or self._socket.is_closing():
            return False
        self._socket.write(data)
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
