"""sipgrid's frames (proto/stream.proto): the calls of sipgrid's streams on a plain TCP
connection, each message its length (4 bytes) and its protobuf.

A call on a grpc.aio stream costs some 350 µs of CPU a round trip, client and server
together, where the same message on a plain connection costs some 170 (bench/README.md,
"Frames (session 28)"). The gRPC stream stays the way in: a server offers
its frames in the stream's header, and a client that takes the offer ends the stream and
sends its calls on the frames connection; one that does not (Routr's, an older sipgrid's)
goes on with the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf.message import DecodeError, Message

from sipgrid.pb import stream_pb2
from sipgrid.services import eager

log: Final = logging.getLogger("sipgrid.grpc")

FRAMES_KEY: Final = "sipgrid-frames"  # the stream's header offering the port
LENGTH: Final = struct.Struct("!I")
MAX_FRAME: Final = 4 * 1024 * 1024  # as gRPC's largest message by default
OPEN_TIMEOUT: Final = 1.0  # seconds to connect and be welcomed
HELLO_TIMEOUT = 10.0  # seconds a server waits for a connection's hello
# idle 20 s, then a probe every 10 s, 3 unanswered end it; data unacknowledged for 30 s too
KEEPALIVE: Final = (
    ("TCP_KEEPIDLE", 20),
    ("TCP_KEEPINTVL", 10),
    ("TCP_KEEPCNT", 3),
    ("TCP_USER_TIMEOUT", 30_000),
)


def frame(message: Message) -> bytes:
    body = message.SerializeToString()
    return LENGTH.pack(len(body)) + body


class _Framing(asyncio.Protocol):
    """A connection that reads frames: ``frame_received`` for each whole one."""

    transport: asyncio.Transport | None = None
    max_frame = MAX_FRAME  # the largest frame taken now

    def __init__(self) -> None:
        self._rest = bytearray()  # the start of a frame not yet whole
        self._needed = 0  # bytes that frame takes, its length included

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._rest:  # a frame read in pieces is put together once, when whole
            self._rest += data
            if len(self._rest) < self._needed:
                return
            data = bytes(self._rest)
            self._rest.clear()
        end = len(data)
        at = 0
        while end - at >= 4:
            (size,) = LENGTH.unpack_from(data, at)
            if size > self.max_frame:
                self.refuse(f"a frame of {size} bytes (at most {self.max_frame})")
                return
            if end - at - 4 < size:
                break
            self.frame_received(data[at + 4 : at + 4 + size])
            at += 4 + size
            if self.transport is None or self.transport.is_closing():
                return
        if at < end:
            self._rest += data[at:]
            self._needed = 4 + LENGTH.unpack_from(data, at)[0] if end - at >= 4 else 4

    def frame_received(self, body: bytes) -> None:
        raise NotImplementedError

    def refuse(self, why: str) -> None:
        """The peer broke the protocol: close."""
        log.warning("frames: %s; closing the connection", why)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


# -- the server


@dataclass(frozen=True)
class Handler:
    """One stream's calls: ``parse`` reading one (its type's FromString), and ``respond``
    answering one (never raising: a call that fails is answered with an error, as on
    the gRPC stream)."""

    parse: Callable[[bytes], Any]
    respond: Callable[[Any], Awaitable[Message]]


class FramesServer:
    """Frames for a gRPC server's streams, on a port of its own."""

    def __init__(self, handlers: dict[str, Handler], token: str = "") -> None:
        """``handlers``: by service name (FramesHello.service); ``token``: the service
        token a connection must give, if any."""
        self.handlers = handlers
        self.token = token.encode()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on one socket of ``host`` (the first address it names, so that a port
        the system picks is one port) and answer the port."""
        loop = asyncio.get_running_loop()
        family, kind, proto, _, address = (
            await loop.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as error:
            sock.close()
            raise OSError(f"cannot bind frames to {host}:{port}: {error.strerror}") from None
        self._server = await loop.create_server(lambda: _ServerConnection(self), sock=sock)
        self.port = sock.getsockname()[1]
        return self.port

    def end(self) -> None:
        """Take no more connections; each ends once its calls in flight are answered."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.end()

    async def close(self, grace: float | None = None) -> None:
        """End, wait up to ``grace`` seconds for the calls in flight, then close all."""
        self.end()
        if grace and self._connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while self._connections:
                        await asyncio.sleep(0.02)
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


class _ServerConnection(_Framing):
    max_frame = 1024  # until the hello is taken: a stranger's frames are small

    def __init__(self, server: FramesServer) -> None:
        super().__init__()
        self._server = server
        self._handler: Handler | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self._ending = False
        self._hello_due: asyncio.TimerHandle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _keep_alive(transport.get_extra_info("socket"))
        self._server._connections.add(self)
        self._hello_due = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._silent)

    def _silent(self) -> None:
        if self._handler is None:
            self.refuse(f"no hello within {HELLO_TIMEOUT} s")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._hello_due.cancel()
        self._server._connections.discard(self)
        for task in self._pending:
            task.cancel()

    def pause_writing(self) -> None:  # the client reads no answers: take no more calls
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def frame_received(self, body: bytes) -> None:
        handler = self._handler
        if handler is None:
            self._hello(body)
            return
        try:
            call = handler.parse(body)
        except DecodeError:
            self.refuse("a frame that is not a call")
            return
        # answered in this turn when it can be (Location from memory, Connect's
        # challenge): a task only for a call that has to wait
        task = eager.start(self._answer(handler, call))
        if task is not None:
            self._pending.add(task)
            task.add_done_callback(self._done)

    def _hello(self, body: bytes) -> None:
        try:
            hello = stream_pb2.FramesHello.FromString(body)
        except DecodeError:
            self.refuse("a first frame that is not a FramesHello")
            return
        handler = self._server.handlers.get(hello.service)
        token = self._server.token
        if handler is None:
            error = f"UNIMPLEMENTED: no frames for {hello.service!r}"
        elif token and not hmac.compare_digest(hello.token.encode(), token):
            error = "UNAUTHENTICATED: x-sipgrid-token: the service token is required"
        else:
            error = ""
        assert self.transport is not None
        self.transport.write(frame(stream_pb2.FramesWelcome(error=error)))
        if error:
            self.close()
        else:
            self._handler = handler
            self._hello_due.cancel()
            self.max_frame = MAX_FRAME

    async def _answer(self, handler: Handler, call: Any) -> None:
        reply = await handler.respond(call)
        if self.transport is not None:
            self.transport.write(frame(reply))

    def _done(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if self._ending and not self._pending:
            self.close()

    def end(self) -> None:
        self._ending = True
        if self.transport is not None:
            self.transport.pause_reading()  # no more calls
        if not self._pending:
            self.close()


# -- the client


class FramesRefused(Exception):
    """No frames connection: the server could not be reached, or refused it."""


class FramesClient(_Framing):
    """A client's frames connection: ``send`` a call, ``on_answer`` each answer;
    ``on_lost`` once when the connection ends."""

    def __init__(
        self,
        parse: Callable[[bytes], Any],
        on_answer: Callable[[Any], None],
        on_lost: Callable[[], None],
    ) -> None:
        """``parse``: the answers' type's FromString."""
        super().__init__()
        self._parse = parse
        self._on_answer = on_answer
        self._on_lost: Callable[[], None] | None = on_lost
        self.welcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def send(self, call: Any) -> bool:
        """Whether the call went out (not after the connection was lost)."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(frame(call))
        return True

    def frame_received(self, body: bytes) -> None:
        try:
            if not self.welcome.done():
                self.welcome.set_result(stream_pb2.FramesWelcome.FromString(body).error)
                return
            answer = self._parse(body)
        except DecodeError:
            self.refuse("a frame that is not an answer")
            return
        self._on_answer(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.welcome.done():
            self.welcome.set_result("UNAVAILABLE: the connection closed")
        lost, self._on_lost = self._on_lost, None
        if lost is not None:
            lost()


async def open_frames(
    host: str,
    port: int,
    service: str,
    token: str,
    parse: Callable[[bytes], Any],
    on_answer: Callable[[Any], None],
    on_lost: Callable[[], None],
) -> FramesClient:
    """A frames connection to ``service`` at host:port, welcomed; FramesRefused when
    none comes within OPEN_TIMEOUT."""
    loop = asyncio.get_running_loop()
    client: FramesClient | None = None
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            transport, client = await loop.create_connection(
                lambda: FramesClient(parse, on_answer, on_lost), host, port
            )
            _keep_alive(transport.get_extra_info("socket"))
            client.send(stream_pb2.FramesHello(service=service, token=token))
            error = await client.welcome
    except (OSError, TimeoutError) as failure:
        _drop(client)
        raise FramesRefused(f"{host}:{port}: {failure or 'no welcome in time'}") from None
    except BaseException:  # cancelled: the stream closed meanwhile
        _drop(client)
        raise
    if error:
        _drop(client)
        raise FramesRefused(f"{host}:{port}: {error}")
    return client


def _keep_alive(sock: Any) -> None:
    """A peer that vanished without a word (a node gone, a NAT that forgot the flow) is
    found out within a minute, not after TCP's own 15 minutes of retries: the calls then
    fail, and the next opens the stream again (on a server: the connection is freed)."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _drop(client: FramesClient | None) -> None:
    if client is not None:
        client._on_lost = None
        client.close()


def frames_host(addr: str) -> str | None:
    """The host of a gRPC target "host:port" or "[v6]:port"; None for a target with a
    scheme (dns:, unix:), whose host a client does not know."""
    if addr.startswith("["):
        return addr[1 : addr.find("]")] or None
    host, colon, port = addr.rpartition(":")
    if not colon or not port.isdigit() or ":" in host or "/" in host:
        return None
    return host or None
