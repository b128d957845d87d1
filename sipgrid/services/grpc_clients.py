"""gRPC clients of the Processor and Location contracts, behind the domain interfaces:
on sipgrid's streams (proto/stream.proto) where the server has them, else Routr's unary
calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, Generic, Protocol, TypeVar

import grpc

from sipgrid._mypyc import mypyc_attr
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
from sipgrid.services.frames import (
    FRAMES_KEY,
    FramesClient,
    FramesRefused,
    frames_host,
    open_frames,
)
from sipgrid.services.grpc_options import internal_channel, service_token, token_metadata
from sipgrid.services.settings import Settings
from sipgrid.sip import Request

log: Final = logging.getLogger("sipgrid.grpc")

TIMEOUT: Final = 5.0
FRAMES_RETRY: Final = 60.0  # seconds before a client tries again frames it could not open
STREAM_SERVICE: Final = "sipgrid.stream.v1.ProcessorStream"
LOCATION_STREAM_SERVICE: Final = "sipgrid.stream.v1.LocationStream"


# subclassed where a test counts what passes through it
@mypyc_attr(allow_interpreted_subclasses=True)
class GrpcProcessor:
    """A Processor (Dispatcher, Connect, middleware) in another process: on sipgrid's
    stream when it serves one (proto/stream.proto), else one unary call per message."""

    def __init__(
        self,
        addr: str,
        timeout: float = TIMEOUT,
        stream: bool | None = None,
        direct: bool = False,
    ) -> None:
        """``direct``: an EdgePort's processor, which may be a Dispatcher: watch its direct
        routes (DirectRoutes) and send those requests straight to their processor."""
        # it may change responses: they all go through it, until it says it passes
        # them through unchanged (sipgrid's Dispatcher without middlewares, Connect)
        self.handles_responses = True
        self.addr = addr
        self._channel = internal_channel(addr)
        self._stub = processor_pb2_grpc.ProcessorStub(self._channel)
        self._timeout = timeout
        settings = Settings.load()
        on = settings.streams if stream is None else stream
        self._stream: CallStream[stream_pb2.StreamRequest, stream_pb2.StreamResponse] | None = (
            CallStream(
                stream_pb2_grpc.ProcessorStreamStub(self._channel).ProcessMessages,
                addr,
                (STREAM_SERVICE, stream_pb2.StreamResponse.FromString) if settings.frames else None,
            )
            if on
            else None
        )
        self._direct = (
            DirectRoutes(self._channel, addr, timeout)
            if direct and on and settings.direct_routes
            else None
        )

    @property
    def streams(self) -> bool:
        """Whether messages go on the stream (until the processor turns out not to serve it)."""
        return self._stream is not None and self._stream.supported

    @property
    def framed(self) -> bool:
        """Whether the stream's calls go on the processor's frames now."""
        return self._stream is not None and self._stream.framed

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        if self._direct is not None and isinstance(request.message, Request):
            processor = self._direct.route(request.method)
            if processor is not None:
                answer = await processor.process_message(request)
                self.handles_responses = self._direct.responses  # as the Dispatcher says
                return answer
        if self.streams:  # the stream's call built in place (a message given is copied)
            item = stream_pb2.StreamRequest()
            convert.request_into_pb(request, item.request, typed=False)
            reply = await self.process_pb(item.request, False, item)
        else:
            reply = await self.process_pb(convert.request_to_pb(request))
        return convert.response_from_pb(reply, request.message)

    def submit(
        self, request: MessageRequest, done: Callable[[MessageResponse | None], None]
    ) -> bool:
        """``process_message`` without a coroutine, for the EdgePort: the request goes on
        the processor's frames now, and ``done`` gets the answer when it comes (None when
        the processor failed or is down; why is logged). False, with nothing sent, where
        it cannot go that way (no frames open yet, a processor without the stream): the
        caller then awaits ``process_message``. A task per message, its future, its timer
        and the coroutines it resumes are not made."""
        direct = self._direct
        if direct is not None and isinstance(request.message, Request):
            processor = direct.route(request.method)
            if processor is not None:

                def relayed(result: MessageResponse | None) -> None:
                    if result is not None:
                        self.handles_responses = direct.responses  # as the Dispatcher says
                    done(result)

                return processor.submit(request, relayed)
        stream = self._stream
        if stream is None or not stream.framed:
            return False
        item = stream_pb2.StreamRequest()
        convert.request_into_pb(request, item.request, typed=False)
        message = request.message

        def settled(answer: stream_pb2.StreamResponse | None, error: Exception | None) -> None:
            result = None
            if answer is not None:
                reply = answer.response
                self.handles_responses = reply.metadata.get(META_RESPONSES) != "pass"
                try:
                    result = convert.response_from_pb(reply, message)
                except Exception as failure:  # as process_message's caller takes it
                    error = failure
            if result is None:
                log.warning("processor failed: %s", error)
            done(result)

        return stream.submit(item, self._timeout, settled)

    def untouched_route(self, method: str) -> str | None:
        """The address of the processor a request of ``method`` goes to directly, past the
        Dispatcher (which sends it there with nothing in between), else None."""
        if self._direct is None:
            return None
        processor = self._direct.route(method)
        return processor.addr if processor is not None else None

    async def process_pb(
        self,
        request: processor_pb2.MessageRequest,
        typed: bool = True,
        item: stream_pb2.StreamRequest | None = None,
    ) -> processor_pb2.MessageResponse:
        """The call itself, protobuf in and out (the Dispatcher passes messages through).
        ``typed``: whether the message has Routr's typed fields already; a unary call
        fills them. A reply from the stream has ``raw`` alone. ``item``: the stream's
        call holding ``request`` already, else it is made here."""
        if self._stream is not None:
            if item is None:
                item = stream_pb2.StreamRequest(request=request)
            answer = await self._stream.call(item, self._timeout)
            if answer is not None:
                self.handles_responses = answer.response.metadata.get(META_RESPONSES) != "pass"
                return answer.response
        if not typed:
            convert.add_typed_fields(request.message)
        reply: processor_pb2.MessageResponse = await unary_call(
            self._stub.ProcessMessage, request, self._timeout, self.addr
        )
        self.handles_responses = reply.metadata.get(META_RESPONSES) != "pass"
        return reply

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
        if self._direct is not None:
            await self._direct.close()
        if self._stream is not None:
            self._stream.close()
        await self._channel.close()


class DirectRoutes:
    """A Dispatcher's direct routes, watched (proto/stream.proto, DispatcherRoutes): for a
    request whose method is there, the processor to send it to without the Dispatcher,
    which would only pass it on. Empty until the table comes, and again from the moment
    the watch ends (the Dispatcher stopped, perhaps to come back with middlewares) until
    it is open again. A processor is used only once its health check has answered from
    here: one this process cannot reach keeps getting its requests through the
    Dispatcher. A Dispatcher without the watch (Routr's, or none: Connect itself)
    answers UNIMPLEMENTED, and it is not asked again."""

    RETRY = 1.0  # seconds between a watch that ended and the next
    RECHECK = 5.0  # seconds between health checks of a processor not reached yet

    def __init__(self, channel: grpc.aio.Channel, addr: str, timeout: float) -> None:
        self._stub = stream_pb2_grpc.DispatcherRoutesStub(channel)
        self._addr = addr
        self._timeout = timeout
        self._routes: dict[str, GrpcProcessor] = {}
        self._processors: dict[str, GrpcProcessor] = {}  # by address, across watches
        self.responses = True  # whether responses go to the Dispatcher (a middleware's)
        self._watcher: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    def route(self, method: str) -> GrpcProcessor | None:
        """The processor for a request of ``method``, or None: through the Dispatcher.
        The first call starts the watch."""
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
        return self._routes.get(method)

    async def _watch(self) -> None:
        told = False  # that the watch failed: said once until a table comes again
        while True:
            try:
                call = self._stub.Watch(
                    stream_pb2.WatchRoutes(), metadata=token_metadata(), wait_for_ready=True
                )
                async for table in call:
                    self.responses = table.responses
                    self._take(dict(table.processors))
                    told = False
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                    log.info("%s has no direct routes: every message goes there", self._addr)
                    return
                if not told:
                    log.info("%s: no direct routes for now: %s", self._addr, error.code().name)
                    told = True
            self._drop()
            await asyncio.sleep(self.RETRY)

    def _take(self, table: dict[str, str]) -> None:
        """A new table: its processors are used as each answers a health check."""
        self._drop()
        for addr in sorted(set(table.values())):
            methods = [method for method, where in table.items() if where == addr]
            processor = self._processors.get(addr)
            if processor is None:
                processor = self._processors[addr] = GrpcProcessor(addr, self._timeout)
            check = asyncio.ensure_future(self._admit(processor, methods))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    async def _admit(self, processor: GrpcProcessor, methods: list[str]) -> None:
        warned = False
        while not await processor.healthy():
            if not warned:
                log.warning(
                    "%s, a direct route of %s, does not answer from here: its requests"
                    " go through %s until it does",
                    processor.addr,
                    self._addr,
                    self._addr,
                )
                warned = True
            await asyncio.sleep(self.RECHECK)
        for method in methods:
            self._routes[method] = processor
        log.info("direct to %s: %s", processor.addr, " ".join(methods))

    def _drop(self) -> None:
        self._routes = {}
        for check in list(self._checks):
            check.cancel()

    async def close(self) -> None:
        self._drop()
        if self._watcher is not None:
            self._watcher.cancel()
        for processor in self._processors.values():
            await processor.close()


class StreamUnsupported(Exception):
    """The server has no such sipgrid stream (UNIMPLEMENTED): nothing was processed."""


class _Tagged(Protocol):
    id: int


class _Answer(Protocol):
    id: int
    error_code: str
    error: str


Out = TypeVar("Out", bound=_Tagged)
In = TypeVar("In", bound=_Answer)


class Waiting(Protocol):
    """What waits for a call's answer: a future (``call``) or an _Answered (``submit``)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, error: BaseException, /) -> None: ...


class _Answered(Generic[In]):
    """A call's answer handed to a function at once, where a future would wake a task on
    a later turn of the loop (``CallStream.submit``). Settled once: by the answer, by the
    connection's end or by its timer, whichever comes first; it then leaves ``waiting``."""

    __slots__ = ("_ident", "_settled", "_waiting", "expiry")

    def __init__(
        self,
        settled: Callable[[In | None, Exception | None], None],
        waiting: dict[int, Waiting],
        ident: int,
    ) -> None:
        self._settled: Callable[[In | None, Exception | None], None] | None = settled
        self._waiting = waiting
        self._ident = ident
        self.expiry: asyncio.TimerHandle | None = None

    def done(self) -> bool:
        return self._settled is None

    def set_result(self, result: In) -> None:
        self._settle(result, None)

    def set_exception(self, error: BaseException) -> None:
        self._settle(None, error if isinstance(error, Exception) else Exception(str(error)))

    def _settle(self, result: In | None, error: Exception | None) -> None:
        settled, self._settled = self._settled, None
        if settled is None:
            return
        self._waiting.pop(self._ident, None)
        if self.expiry is not None:
            self.expiry.cancel()
        try:
            settled(result, error)
        except Exception:  # never into the connection that read the answer
            log.exception("a processor's answer could not be taken")


class _OpenStream(Generic[Out, In]):
    """An open stream's call and what waits on it."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[Out, In],
        queue: asyncio.Queue[Out | None],
        accepted: asyncio.Future[bool],
    ) -> None:
        self.call = call
        self.queue = queue
        # whether the server took the call: True once its headers came (a sipgrid server
        # sends them at once), False when the call ended without them (no such stream)
        self.accepted = accepted
        self.waiting: dict[int, Waiting] = {}
        # the server's frames, once taken: the calls go there, and the gRPC call has ended
        self.frames: FramesClient | None = None


async def unary_call(method: Callable[..., Any], request: Any, timeout: float, addr: str) -> Any:
    """One unary call; a failure raised as one on a stream is (ProcessorUnavailable with
    the status code), so that callers see one kind of failure on either path."""
    try:
        return await method(request, timeout=timeout, wait_for_ready=True)
    except grpc.aio.AioRpcError as error:
        raise ProcessorUnavailable(f"{addr}: {error.code().name}: {error.details()}") from None


class CallStream(Generic[Out, In]):
    """Calls multiplexed on one long-lived gRPC stream (proto/stream.proto): each goes
    out with an id and its answer comes back with it, in any order. Opened at the first
    call, and again at the next call after it breaks (the calls then in flight fail, as
    unary calls in flight would). When the server offers its frames (frames.py), the
    calls go there instead, and the stream ends."""

    def __init__(
        self,
        method: Callable[..., grpc.aio.StreamStreamCall[Out, In]],
        addr: str,
        frames: tuple[str, Callable[[bytes], In]] | None = None,
    ) -> None:
        """``method``: the stub's stream method, which the stream is opened with;
        ``frames``: the stream's service name and its answers' FromString, to take the server's
        offer of frames (None: keep to the gRPC stream)."""
        self._method = method
        self._addr = addr
        self._frames = frames
        self._frames_host = frames_host(addr)
        self._frames_refused_at = -FRAMES_RETRY
        self._open: _OpenStream[Out, In] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._last_id = 0
        self.supported = True  # until the server says it has no such stream

    @property
    def framed(self) -> bool:
        """Whether the calls go on the server's frames now."""
        return self._open is not None and self._open.frames is not None

    async def call(self, item: Out, timeout: float) -> In | None:
        """The answer to ``item`` (its id is set here); ProcessorUnavailable when none
        comes within ``timeout`` or the stream breaks. None when the server has no such
        stream (one written for Routr), from then on: the caller makes a unary call."""
        if not self.supported:
            return None
        try:
            return await self._call(item, timeout)
        except StreamUnsupported:
            if self.supported:
                self.supported = False
                log.info("%s has no sipgrid stream: unary calls from now on", self._addr)
            return None

    def submit(
        self, item: Out, timeout: float, settled: Callable[[In | None, Exception | None], None]
    ) -> bool:
        """``item`` sent on the frames, if they are open (False, nothing sent, if not);
        ``settled`` gets its answer, or why there is none (ProcessorUnavailable), in the
        turn that brings it: the answer's frame, the connection's end, its timer."""
        stream = self._open
        if stream is None or stream.frames is None:
            return False
        self._last_id += 1
        item.id = ident = self._last_id  # type: ignore[attr-defined]
        waiter: _Answered[In] = _Answered(settled, stream.waiting, ident)
        stream.waiting[ident] = waiter
        if not stream.frames.send(item):
            del stream.waiting[ident]
            return False
        waiter.expiry = asyncio.get_running_loop().call_later(
            timeout, self._expire, waiter, timeout
        )
        return True

    async def _call(self, item: Out, timeout: float) -> In:
        stream = self._open or self._start()
        self._last_id += 1
        item.id = ident = self._last_id
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[In] = loop.create_future()
        stream.waiting[ident] = answer
        expiry = loop.call_later(timeout, self._expire, answer, timeout)
        if stream.frames is None:
            stream.queue.put_nowait(item)
        elif not stream.frames.send(item):
            expiry.cancel()
            del stream.waiting[ident]
            raise ProcessorUnavailable(f"{self._addr}: the frames connection closed")
        try:
            return await answer
        finally:
            expiry.cancel()
            stream.waiting.pop(ident, None)

    def _expire(self, answer: Waiting, after: float) -> None:
        if not answer.done():
            answer.set_exception(
                ProcessorUnavailable(f"{self._addr}: DEADLINE_EXCEEDED: no answer in {after} s")
            )

    def _start(self) -> _OpenStream[Out, In]:
        queue: asyncio.Queue[Out | None] = asyncio.Queue()
        accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        call = self._method(_Drain(queue, accepted), metadata=token_metadata(), wait_for_ready=True)
        stream = self._open = _OpenStream(call, queue, accepted)
        self._reader = asyncio.ensure_future(self._read(stream))
        return stream

    async def _read(self, stream: _OpenStream[Out, In]) -> None:
        failure: Exception
        try:
            # Nothing is written before the server has taken the call. A server without
            # the stream ends it at once with UNIMPLEMENTED, and grpc.aio's client, when
            # that end crosses a write of its own, reports it as INTERNAL "Internal
            # error from Core" instead (56 of 300 first calls to Routr's Node library),
            # which would fail the message rather than fall back to unary calls.
            offer = _offered(await stream.call.initial_metadata())
            if offer and await self._take_frames(stream, offer):
                return
            if not stream.accepted.done():
                stream.accepted.set_result(not stream.call.done())
            async for reply in stream.call:
                _settle(stream, reply, self._addr)
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
        if not stream.accepted.done():
            stream.accepted.set_result(False)
        stream.queue.put_nowait(None)  # ends what gRPC reads of it
        for answer in list(stream.waiting.values()):  # an _Answered leaves it when settled
            if not answer.done():
                answer.set_exception(failure)

    async def _take_frames(self, stream: _OpenStream[Out, In], port: int) -> bool:
        """Send the stream's calls on the server's frames from now on, and end the gRPC
        call; False when there are none to take (off, or refused lately)."""
        if self._frames is None or self._frames_host is None:
            return False
        loop = asyncio.get_running_loop()
        if loop.time() - self._frames_refused_at < FRAMES_RETRY:
            return False
        service, parse = self._frames
        try:
            frames = await open_frames(
                self._frames_host,
                port,
                service,
                service_token(),
                parse,
                lambda reply: _settle(stream, reply, self._addr),
                lambda: self._lost(stream),
            )
        except FramesRefused as refused:
            self._frames_refused_at = loop.time()
            log.warning("no frames (%s): the gRPC stream instead", refused)
            return False
        stream.frames = frames
        while not stream.queue.empty():  # what was called meanwhile
            item = stream.queue.get_nowait()
            if item is not None:
                frames.send(item)
        stream.accepted.set_result(False)  # the gRPC call sends nothing
        stream.call.cancel()
        return True

    def _lost(self, stream: _OpenStream[Out, In]) -> None:
        """The frames connection closed: its calls in flight fail, the next opens again."""
        if self._open is stream:
            self._open = None
        failure = ProcessorUnavailable(f"{self._addr}: the frames connection closed")
        for answer in list(stream.waiting.values()):  # an _Answered leaves it when settled
            if not answer.done():
                answer.set_exception(failure)

    def close(self) -> None:
        if self._open is not None:
            self._open.queue.put_nowait(None)
            self._open.call.cancel()
            if self._open.frames is not None:
                self._open.frames.close()
        if self._reader is not None:
            self._reader.cancel()


def _offered(metadata: Any) -> int:
    """The port of the frames a stream's header offers, 0 for none."""
    for key, value in metadata or ():
        if key == FRAMES_KEY and str(value).isdigit():
            return int(value)
    return 0


def _settle(stream: _OpenStream[Out, In], reply: In, addr: str) -> None:
    """An answer that came: to its call, unless that expired meanwhile."""
    answer = stream.waiting.get(reply.id)
    if answer is None or answer.done():
        return
    if reply.error_code:
        answer.set_exception(ProcessorUnavailable(f"{addr}: {reply.error_code}: {reply.error}"))
    else:
        answer.set_result(reply)


class _Drain(Generic[Out]):
    """What a stream sends: the queue, until None, once the server has taken the call
    (nothing when it has not). A class, not an async generator, which mypyc does not
    compile."""

    def __init__(self, queue: asyncio.Queue[Out | None], accepted: asyncio.Future[bool]) -> None:
        self._queue: asyncio.Queue[Out | None] | None = queue
        self._accepted: asyncio.Future[bool] | None = accepted

    def __aiter__(self) -> _Drain[Out]:
        return self

    async def __anext__(self) -> Out:
        accepted, self._accepted = self._accepted, None
        if accepted is not None and not await accepted:
            self._queue = None
        item = None if self._queue is None else await self._queue.get()
        if item is None:
            self._queue = None
            raise StopAsyncIteration
        return item


class GrpcLocation:
    """The Location service in another process: on sipgrid's stream when it serves one
    (proto/stream.proto), else one unary call each (ListRoutes is always unary)."""

    def __init__(self, addr: str, timeout: float = TIMEOUT, stream: bool | None = None) -> None:
        self.addr = addr
        self._channel = internal_channel(addr)
        self._stub = location_pb2_grpc.LocationStub(self._channel)
        self._timeout = timeout
        settings = Settings.load()
        on = settings.streams if stream is None else stream
        self._stream: CallStream[stream_pb2.LocationCall, stream_pb2.LocationAnswer] | None = (
            CallStream(
                stream_pb2_grpc.LocationStreamStub(self._channel).Calls,
                addr,
                (LOCATION_STREAM_SERVICE, stream_pb2.LocationAnswer.FromString)
                if settings.frames
                else None,
            )
            if on
            else None
        )

    @property
    def streams(self) -> bool:
        """Whether calls go on the stream (until the server turns out not to serve it)."""
        return self._stream is not None and self._stream.supported

    @property
    def framed(self) -> bool:
        """Whether the stream's calls go on Location's frames now."""
        return self._stream is not None and self._stream.framed

    async def _on_stream(self, call: stream_pb2.LocationCall) -> stream_pb2.LocationAnswer | None:
        """The answer from the stream; None without one (then a unary call)."""
        return None if self._stream is None else await self._stream.call(call, self._timeout)

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        call = _add_route_call(aor, route, max_contacts)
        if await self._on_stream(call) is None:
            await self._unary(self._stub.AddRoute, call.add_route)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        """One call on the stream; two where there is none, or the server is from before
        ``find_after_add`` (proto/stream.proto)."""
        call = _add_route_call(aor, route, max_contacts)
        call.find_after_add = True
        answer = await self._on_stream(call)
        if answer is None:
            await self._unary(self._stub.AddRoute, call.add_route)
        elif answer.found_after_add:
            return [convert.route_from_pb(r) for r in answer.routes.routes]
        return await self.find_routes(aor)

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        call = stream_pb2.LocationCall()  # filled in place: a message given is copied
        request = call.find_routes
        request.aor = aor
        request.call_id = call_id
        if labels:  # an empty map given costs as much as a full one
            convert.map_into(labels, request.labels)
        answer = await self._on_stream(call)
        reply = (
            answer.routes
            if answer is not None
            else await self._unary(self._stub.FindRoutes, request)
        )
        return [convert.route_from_pb(r) for r in reply.routes]

    async def remove_routes(self, aor: str) -> None:
        request = location_pb2.RemoveRoutesRequest(aor=aor)
        if await self._on_stream(stream_pb2.LocationCall(remove_routes=request)) is None:
            await self._unary(self._stub.RemoveRoutes, request)

    async def _unary(self, method: Callable[..., Any], request: Any) -> Any:
        return await unary_call(method, request, self._timeout, self.addr)

    async def list_bindings(self) -> list[Binding]:
        reply = await self._stub.ListRoutes(
            location_pb2.ListRoutesRequest(), timeout=self._timeout, wait_for_ready=True
        )
        return [Binding(b.aor, convert.route_from_pb(b.route)) for b in reply.bindings]

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        await self._channel.close()


def _add_route_call(aor: str, route: Route, max_contacts: int) -> stream_pb2.LocationCall:
    """An AddRoute as the stream's call, filled in place (a message given is copied);
    its ``add_route`` is the unary call's request."""
    call = stream_pb2.LocationCall()
    request = call.add_route
    request.aor = aor
    convert.route_into_pb(route, request.route)
    request.max_contacts = max_contacts
    return call
