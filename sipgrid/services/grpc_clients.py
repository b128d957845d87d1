"""gRPC clients of the Processor and Location contracts, behind the domain interfaces."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from sipgrid.api import convert
from sipgrid.api.types import (
    META_RESPONSES,
    Binding,
    MessageRequest,
    MessageResponse,
    ProcessorUnavailable,
    Route,
)
from sipgrid.pb import (
    location_pb2,
    location_pb2_grpc,
    processor_pb2,
    processor_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
)
from sipgrid.services.grpc_options import internal_channel, token_metadata
from sipgrid.services.settings import Settings

log = logging.getLogger("sipgrid.grpc")

TIMEOUT = 5.0


class GrpcProcessor:
    """A Processor (Dispatcher, Connect, middleware) in another process: on sipgrid's
    stream when it serves one (proto/stream.proto), else one unary call per message."""

    def __init__(self, addr: str, timeout: float = TIMEOUT, stream: bool | None = None) -> None:
        # it may change responses: they all go through it, until it says it passes
        # them through unchanged (sipgrid's Dispatcher without middlewares, Connect)
        self.handles_responses = True
        self.addr = addr
        self._channel = internal_channel(addr)
        self._stub = processor_pb2_grpc.ProcessorStub(self._channel)
        self._timeout = timeout
        if stream is None:
            stream = Settings.load().processor_stream
        self._stream = MessageStream(self._channel, addr) if stream else None

    @property
    def streams(self) -> bool:
        """Whether messages go on the stream (until the processor turns out not to serve it)."""
        return self._stream is not None

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        typed = self._stream is None
        reply = await self.process_pb(convert.request_to_pb(request, typed), typed)
        return convert.response_from_pb(reply, request.message)

    async def process_pb(
        self, request: processor_pb2.MessageRequest, typed: bool = True
    ) -> processor_pb2.MessageResponse:
        """The call itself, protobuf in and out (the Dispatcher passes messages through).
        ``typed``: whether the message has Routr's typed fields already; a unary call
        fills them. A reply from the stream has ``raw`` alone."""
        stream = self._stream
        if stream is not None:
            try:
                reply = await stream.process(request, self._timeout)
            except StreamUnsupported:
                self._stream = None  # a processor written for Routr: unary from now on
                log.info("%s serves no sipgrid stream: one call per message", self.addr)
            else:
                self.handles_responses = reply.metadata.get(META_RESPONSES) != "pass"
                return reply
        if not typed:
            convert.add_typed_fields(request.message)
        try:
            answer: processor_pb2.MessageResponse = await self._stub.ProcessMessage(
                request, timeout=self._timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as error:
            raise ProcessorUnavailable(
                f"{self.addr}: {error.code().name}: {error.details()}"
            ) from None
        self.handles_responses = answer.metadata.get(META_RESPONSES) != "pass"
        return answer

    async def healthy(self) -> bool:
        """The standard gRPC health check of the processor's server."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            reply = await health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        await self._channel.close()


class StreamUnsupported(Exception):
    """The server has no sipgrid stream (UNIMPLEMENTED): nothing was processed."""


@dataclass
class _OpenStream:
    call: grpc.aio.StreamStreamCall[stream_pb2.StreamRequest, stream_pb2.StreamResponse]
    queue: asyncio.Queue[stream_pb2.StreamRequest | None]
    waiting: dict[int, asyncio.Future[processor_pb2.MessageResponse]] = field(default_factory=dict)


class MessageStream:
    """One long-lived ProcessMessages call to a processor: each message goes out with an
    id and its answer comes back with it, in any order. Opened at the first message,
    and again at the next message after it breaks (the messages then in flight fail, as
    unary calls in flight would)."""

    def __init__(self, channel: grpc.aio.Channel, addr: str) -> None:
        self._stub = stream_pb2_grpc.ProcessorStreamStub(channel)
        self._addr = addr
        self._open: _OpenStream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._last_id = 0

    async def process(
        self, request: processor_pb2.MessageRequest, timeout: float
    ) -> processor_pb2.MessageResponse:
        """The processor's answer; ProcessorUnavailable when none comes within
        ``timeout`` or the stream breaks; StreamUnsupported from a server without it."""
        stream = self._open or self._start()
        self._last_id += 1
        ident = self._last_id
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[processor_pb2.MessageResponse] = loop.create_future()
        stream.waiting[ident] = answer
        expiry = loop.call_later(timeout, self._expire, answer, timeout)
        stream.queue.put_nowait(stream_pb2.StreamRequest(id=ident, request=request))
        try:
            return await answer
        finally:
            expiry.cancel()
            stream.waiting.pop(ident, None)

    def _expire(self, answer: asyncio.Future[processor_pb2.MessageResponse], after: float) -> None:
        if not answer.done():
            answer.set_exception(
                ProcessorUnavailable(f"{self._addr}: DEADLINE_EXCEEDED: no answer in {after} s")
            )

    def _start(self) -> _OpenStream:
        queue: asyncio.Queue[stream_pb2.StreamRequest | None] = asyncio.Queue()
        call = self._stub.ProcessMessages(
            _drain(queue), metadata=token_metadata(), wait_for_ready=True
        )
        stream = self._open = _OpenStream(call, queue)
        self._reader = asyncio.ensure_future(self._read(stream))
        return stream

    async def _read(self, stream: _OpenStream) -> None:
        failure: Exception
        try:
            async for reply in stream.call:
                answer = stream.waiting.get(reply.id)
                if answer is None or answer.done():
                    continue  # expired meanwhile
                if reply.error_code:
                    answer.set_exception(
                        ProcessorUnavailable(f"{self._addr}: {reply.error_code}: {reply.error}")
                    )
                else:
                    answer.set_result(reply.response)
            failure = ProcessorUnavailable(f"{self._addr}: the stream ended")
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                failure = StreamUnsupported(self._addr)
            else:
                failure = ProcessorUnavailable(
                    f"{self._addr}: {error.code().name}: {error.details()}"
                )
        except asyncio.CancelledError:
            failure = ProcessorUnavailable(f"{self._addr}: the stream was closed")
        if self._open is stream:
            self._open = None
        for answer in stream.waiting.values():
            if not answer.done():
                answer.set_exception(failure)

    def close(self) -> None:
        if self._open is not None:
            self._open.queue.put_nowait(None)
            self._open.call.cancel()
        if self._reader is not None:
            self._reader.cancel()


async def _drain(
    queue: asyncio.Queue[stream_pb2.StreamRequest | None],
) -> AsyncIterator[stream_pb2.StreamRequest]:
    """What the stream sends: the queue, until None."""
    while (item := await queue.get()) is not None:
        yield item


class GrpcLocation:
    """The Location service in another process."""

    def __init__(self, addr: str, timeout: float = TIMEOUT) -> None:
        self.addr = addr
        self._channel = internal_channel(addr)
        self._stub = location_pb2_grpc.LocationStub(self._channel)
        self._timeout = timeout

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        await self._stub.AddRoute(
            location_pb2.AddRouteRequest(
                aor=aor, route=convert.route_to_pb(route), max_contacts=max_contacts
            ),
            timeout=self._timeout,
            wait_for_ready=True,
        )

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        reply = await self._stub.FindRoutes(
            location_pb2.FindRoutesRequest(aor=aor, call_id=call_id, labels=labels or {}),
            timeout=self._timeout,
            wait_for_ready=True,
        )
        return [convert.route_from_pb(r) for r in reply.routes]

    async def remove_routes(self, aor: str) -> None:
        await self._stub.RemoveRoutes(
            location_pb2.RemoveRoutesRequest(aor=aor), timeout=self._timeout, wait_for_ready=True
        )

    async def list_bindings(self) -> list[Binding]:
        reply = await self._stub.ListRoutes(
            location_pb2.ListRoutesRequest(), timeout=self._timeout, wait_for_ready=True
        )
        return [Binding(b.aor, convert.route_from_pb(b.route)) for b in reply.bindings]

    async def close(self) -> None:
        await self._channel.close()
