"""The WebSocket shell (RFC 7118) on aiohttp: one listening point for WS or WSS.

The ``sip`` subprotocol is required (section 4); each WebSocket message carries one
SIP message (section 5.1), handed to the core like a datagram; text frames go out for
UTF-8 messages, binary frames otherwise. Pings keep the connection alive; a closed
connection is reported so its flow is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from aiohttp import WSMsgType, web

from sipgrid.api.types import NetInterface, Transport

from .pages import add_phone_page
from .transports import Sink

log = logging.getLogger("sipgrid.edgeport")

PING_INTERVAL = 30.0


class WebSocketConnection:
    """One accepted WebSocket; sends go through a queue so they leave in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.ensure_future(self._write())

    def send(self, data: bytes) -> bool:
        if self.ws.closed:
            return False
        self._queue.put_nowait(data)
        return True

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def _write(self) -> None:
        while (data := await self._queue.get()) is not None:
            try:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as error:
                log.info("WebSocket send failed: %s", error)
                return
        await self.ws.close()

    def stopped(self) -> None:
        self._writer.cancel()


class WebSocketShell:
    """A WS or WSS listening point: any path, the ``sip`` subprotocol."""

    def __init__(
        self,
        sink: Sink,
        transport: Transport,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        phone_page: Path | None = None,
    ) -> None:
        self.sink = sink
        self._phone_page = phone_page  # the web directory to serve /phone/ from
        self.transport = transport
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self._connections: set[WebSocketConnection] = set()

    async def start(self) -> int:
        """Listen; return the port (the one the system picked for port 0)."""
        app = web.Application()
        if self._phone_page is not None:
            add_phone_page(app, self._phone_page)
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def stop(self) -> None:
        for connection in list(self._connections):
            await connection.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if "sip" not in offered:
            return web.Response(
                status=400, text="the sip WebSocket subprotocol is required (RFC 7118)\n"
            )
        ws = web.WebSocketResponse(
            protocols=("sip",),
            heartbeat=PING_INTERVAL,
            max_msg_size=self.sink.max_message_size,
        )
        await ws.prepare(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer:
            await ws.close()
            return ws
        flow = NetInterface(peer[0], peer[1], self.transport)
        connection = WebSocketConnection(ws)
        self._connections.add(connection)
        self.sink.connection_opened(flow, connection)
        try:
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    self.sink.datagram_received(frame.data.encode("utf-8", "surrogateescape"), flow)
                elif frame.type is WSMsgType.BINARY:
                    self.sink.datagram_received(frame.data, flow)
        finally:
            self._connections.discard(connection)
            connection.stopped()
            self.sink.connection_closed(flow, connection)
        return ws
