"""Thin gRPC servicers over the domain services, and a server with the health check.

A servicer converts protobuf to domain objects, calls the plain class and converts
back; a bad request gets INVALID_ARGUMENT naming what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sipgrid._mypyc import mypyc_attr
from sipgrid.api import convert
from sipgrid.api.types import (
    META_RESPONSES,
    LocationService,
    Processor,
    ProcessorUnavailable,
    Route,
)
from sipgrid.pb import (
    location_pb2,
    location_pb2_grpc,
    processor_pb2,
    processor_pb2_grpc,
    registry_pb2_grpc,
    requester_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
)
from sipgrid.services.dispatcher.dispatcher import Dispatcher
from sipgrid.services.frames import FRAMES_KEY, FramesServer, Handler, frames_host
from sipgrid.services.grpc_clients import (
    LOCATION_STREAM_SERVICE,
    STREAM_SERVICE,
    GrpcProcessor,
)
from sipgrid.services.grpc_options import (
    SERVER_OPTIONS,
    bind_grpc,
    internal_interceptors,
    service_token,
)
from sipgrid.services.metrics import MetricsInterceptor, count_served
from sipgrid.services.settings import Settings
from sipgrid.sip import ParseError

if TYPE_CHECKING:
    from sipgrid.services.edgeport.server import EdgePort
    from sipgrid.services.registry.registry import Registry

log: Final = logging.getLogger("sipgrid.grpc")

ROUTES_SERVICE: Final = "sipgrid.stream.v1.DispatcherRoutes"
# as the metrics name a method (each call on the stream counts as one)
STREAM_METHOD: Final = "ProcessorStream/ProcessMessages"
LOCATION_STREAM_METHOD: Final = "LocationStream/Calls"
# seconds a stream that end_streams ends waits for the answers in flight
IN_FLIGHT_GRACE: Final = 1.0


class BadMessage(Exception):
    """A message that cannot be read (INVALID_ARGUMENT)."""


# subclassed where a test stands in for another version of it
@mypyc_attr(allow_interpreted_subclasses=True)
class ProcessorServicer(processor_pb2_grpc.ProcessorServicer):
    def __init__(self, processor: Processor) -> None:
        self._processor = processor

    async def ProcessMessage(
        self, request: processor_pb2.MessageRequest, context: grpc.aio.ServicerContext
    ) -> processor_pb2.MessageResponse:  # type: ignore[override]
        try:
            return await self.answer(request, typed=True)
        except BadMessage as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except ProcessorUnavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        raise AssertionError("unreachable")  # abort raises

    async def answer(
        self,
        request: processor_pb2.MessageRequest,
        typed: bool,
        into: processor_pb2.MessageResponse | None = None,
    ) -> processor_pb2.MessageResponse:
        """The processor's answer to one message; ``typed``: with Routr's typed fields
        (a unary call) or ``raw`` alone (the stream). ``into``: an empty message to write
        it into (a stream's answer's own), returned."""
        try:
            domain = convert.request_from_pb(request)
        except (ParseError, ValueError) as error:
            raise BadMessage(f"message: {error}") from None
        answer = await self._processor.process_message(domain)
        reply = processor_pb2.MessageResponse() if into is None else into
        convert.response_into_pb(answer, reply, typed)
        return says_responses(reply, self._processor.handles_responses)


# the handlers of the streams open in this process, and those end_streams ended
_open_streams: Final[set[asyncio.Task[Any]]] = set()
_ended_streams: Final[set[asyncio.Task[Any]]] = set()
# the frames servers of this process's gRPC servers
_frames_servers: Final[set[FramesServer]] = set()


def end_streams() -> None:
    """At stop, before the server's own: each open stream takes no more calls, answers
    those in flight and ends. A client keeps its stream open for as long as it runs, so
    without this a server stopped on its own (a restart) waits out its whole grace."""
    for handler in list(_open_streams):
        _ended_streams.add(handler)
        handler.cancel()
    for frames in _frames_servers:
        frames.end()


async def answered(
    call: Any, answer: Callable[[Any], Awaitable[Any]], reply_type: Callable[..., Any], method: str
) -> Any:
    """A stream's answer to one call, as a unary call would be answered: ``answer(call)``,
    or a ``reply_type`` with the call's id, an error code and why when it raises (a bad
    call, a part that is down, a bug fails that call alone). Counted as one of ``method``."""
    started = time.perf_counter()
    code = "OK"
    try:
        reply = await answer(call)
    except (BadMessage, ProcessorUnavailable) as error:
        code = "INVALID_ARGUMENT" if isinstance(error, BadMessage) else "UNAVAILABLE"
        reply = reply_type(id=call.id, error_code=code, error=str(error))
    except Exception as error:
        log.error("%s: a call failed", method, exc_info=error)
        code = "INTERNAL"
        reply = reply_type(id=call.id, error_code=code, error=str(error))
    count_served(method, code, time.perf_counter() - started)
    return reply


async def serve_calls(
    calls: AsyncIterator[Any],
    context: grpc.aio.ServicerContext,
    answer: Callable[[Any], Awaitable[Any]],
    reply_type: Callable[..., Any],
    method: str,
    frames_port: int = 0,
) -> None:
    """One of sipgrid's streams (proto/stream.proto): each call that comes in is answered
    as soon as it is done, in whatever order (``answered``), and the stream goes on.
    ``frames_port``: the port of this server's frames, offered in the stream's header."""
    sending = asyncio.Lock()  # one write at a time on a call
    pending: set[asyncio.Task[None]] = set()

    async def one(call: Any) -> None:
        reply = await answered(call, answer, reply_type, method)
        async with sending:
            await context.write(reply)

    with _kept_open() as handler:
        try:
            # headers at once: the client writes nothing until they come (grpc_clients)
            offer = ((FRAMES_KEY, str(frames_port)),) if frames_port else ()
            await context.send_initial_metadata(offer)
            async for call in calls:
                task = asyncio.ensure_future(one(call))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:  # the client is done sending: answer what is in flight
                await asyncio.gather(*pending, return_exceptions=True)
        except asyncio.CancelledError:
            # the server stops or the client went: the stream ends here, not as an error
            # that gRPC logs at every shutdown, since a stream is always open; ended by
            # end_streams, it still answers what is in flight
            if pending and handler in _ended_streams:
                await asyncio.wait(pending, timeout=IN_FLIGHT_GRACE)
        finally:
            for task in pending:
                task.cancel()


def _frames_handler(
    parse: Callable[[bytes], Any],
    answer: Callable[[Any], Awaitable[Any]],
    reply_type: Callable[..., Any],
    method: str,
) -> Handler:
    """A stream's calls as its frames take them: read by ``parse``, each answered as on
    the gRPC stream (``answered``)."""

    async def respond(call: Any) -> Any:
        return await answered(call, answer, reply_type, method)

    return Handler(parse, respond)


@contextlib.contextmanager
def _kept_open() -> Iterator[asyncio.Task[Any] | None]:
    """The handler of a call that stays open (a stream, a watch), known to end_streams
    for as long as it runs."""
    handler = asyncio.current_task()
    if handler is not None:
        _open_streams.add(handler)
    try:
        yield handler
    finally:
        if handler is not None:
            _open_streams.discard(handler)
            _ended_streams.discard(handler)


class StreamServicer(stream_pb2_grpc.ProcessorStreamServicer):
    """sipgrid's processor stream over a processor's servicer."""

    def __init__(self, servicer: ProcessorServicer) -> None:
        self._servicer = servicer
        self.frames_port = 0  # offered to each stream, once the frames server listens

    async def ProcessMessages(
        self,
        request_iterator: AsyncIterator[stream_pb2.StreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:  # type: ignore[override]
        await serve_calls(
            request_iterator,
            context,
            self._answer,
            stream_pb2.StreamResponse,
            STREAM_METHOD,
            self.frames_port,
        )

    def frames(self) -> Handler:
        return _frames_handler(
            stream_pb2.StreamRequest.FromString,
            self._answer,
            stream_pb2.StreamResponse,
            STREAM_METHOD,
        )

    async def _answer(self, item: stream_pb2.StreamRequest) -> stream_pb2.StreamResponse:
        out = stream_pb2.StreamResponse(id=item.id)
        await self._servicer.answer(item.request, typed=False, into=out.response)
        return out


def says_responses(
    reply: processor_pb2.MessageResponse, handles: bool
) -> processor_pb2.MessageResponse:
    """Tell the EdgePort whether responses need to come here (META_RESPONSES)."""
    if handles:
        if META_RESPONSES in reply.metadata:
            del reply.metadata[META_RESPONSES]
    else:
        reply.metadata[META_RESPONSES] = "pass"
    return reply


class DispatcherServicer(ProcessorServicer):
    """The Dispatcher's servicer: a message that no matchFunc or middleware needs to read
    goes through as protobuf, without being parsed here."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self._dispatcher = dispatcher

    async def answer(
        self,
        request: processor_pb2.MessageRequest,
        typed: bool,
        into: processor_pb2.MessageResponse | None = None,
    ) -> processor_pb2.MessageResponse:
        sip = request.message
        if sip.status_code and not self._dispatcher.middlewares_for(sip.cseq.method):
            passed = processor_pb2.MessageResponse(message=sip)
            return _into(says_responses(passed, handles=False), into)
        target = self._dispatcher.direct_route(sip.method or sip.cseq.method)
        if isinstance(target, GrpcProcessor):
            reply = await target.process_pb(request, typed)
            if typed:  # a unary caller may be Routr's EdgePort, which reads them
                convert.add_typed_fields(reply.message)
            return _into(says_responses(reply, self._dispatcher.handles_responses), into)
        return await super().answer(request, typed, into)


def _into(
    reply: processor_pb2.MessageResponse, into: processor_pb2.MessageResponse | None
) -> processor_pb2.MessageResponse:
    """``reply`` itself, or copied into ``into`` when the caller gave one."""
    if into is None:
        return reply
    into.CopyFrom(reply)
    return into


class RoutesServicer(stream_pb2_grpc.DispatcherRoutesServicer):
    """The Dispatcher's direct routes (proto/stream.proto), sent to each EdgePort that
    watches them. The table is fixed for the Dispatcher's life (its config is read at
    start); the watch stays open until the EdgePort goes or the Dispatcher stops, and its
    end tells the EdgePort to send everything to the Dispatcher again."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._table = stream_pb2.DirectRoutes(
            processors=dispatcher.direct_addresses(), responses=dispatcher.handles_responses
        )

    async def Watch(
        self, request: stream_pb2.WatchRoutes, context: grpc.aio.ServicerContext
    ) -> None:  # type: ignore[override]
        with _kept_open():  # end_streams ends it at stop, as the streams
            try:
                await context.write(self._table)
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # the Dispatcher stops or the EdgePort went: the watch ends, not an error


class LocationServicer(location_pb2_grpc.LocationServicer):
    def __init__(self, location: LocationService) -> None:
        self._location = location

    async def AddRoute(
        self, request: location_pb2.AddRouteRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:  # type: ignore[override]
        try:
            await self.add_route(request)
        except BadMessage as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return empty_pb2.Empty()

    async def FindRoutes(
        self, request: location_pb2.FindRoutesRequest, context: grpc.aio.ServicerContext
    ) -> location_pb2.FindRoutesResponse:  # type: ignore[override]
        return await self.find_routes(request)

    async def RemoveRoutes(
        self, request: location_pb2.RemoveRoutesRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:  # type: ignore[override]
        await self.remove_routes(request)
        return empty_pb2.Empty()

    async def ListRoutes(
        self, request: location_pb2.ListRoutesRequest, context: grpc.aio.ServicerContext
    ) -> location_pb2.ListRoutesResponse:  # type: ignore[override]
        bindings = await self._location.list_bindings()
        return location_pb2.ListRoutesResponse(
            bindings=[
                location_pb2.Binding(aor=b.aor, route=convert.route_to_pb(b.route))
                for b in bindings
            ]
        )

    # what a unary call and a call on the stream share

    async def add_route(self, request: location_pb2.AddRouteRequest) -> None:
        await self._location.add_route(request.aor, _route(request), request.max_contacts)

    async def add_route_and_find(
        self, request: location_pb2.AddRouteRequest
    ) -> location_pb2.FindRoutesResponse:
        """The add, then the AOR's routes as find_routes (the AOR alone) would give them:
        one call to the store where it can answer both at once (Redis)."""
        reply = location_pb2.FindRoutesResponse()
        convert.routes_into_pb(await self.added_and_found(request), reply)
        return reply

    async def added_and_found(self, request: location_pb2.AddRouteRequest) -> list[Route]:
        return await self._location.add_route_and_find(
            request.aor, _route(request), request.max_contacts
        )

    async def remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> None:
        await self._location.remove_routes(request.aor)

    async def find_routes(
        self, request: location_pb2.FindRoutesRequest
    ) -> location_pb2.FindRoutesResponse:
        reply = location_pb2.FindRoutesResponse()
        convert.routes_into_pb(await self.found(request), reply)
        return reply

    async def found(self, request: location_pb2.FindRoutesRequest) -> list[Route]:
        return await self._location.find_routes(
            request.aor, request.call_id, convert.map_to_dict(request.labels)
        )


def _route(request: location_pb2.AddRouteRequest) -> Route:
    """The route an AddRoute asks for; BadMessage naming the field that is wrong."""
    if not request.aor:
        raise BadMessage("aor: must not be empty")
    try:
        return convert.route_from_pb(request.route)
    except ValueError as error:
        raise BadMessage(f"route: {error}") from None


# subclassed where a test stands in for another version of it
@mypyc_attr(allow_interpreted_subclasses=True)
class LocationStreamServicer(stream_pb2_grpc.LocationStreamServicer):
    """sipgrid's Location stream over the Location servicer: AddRoute, FindRoutes and
    RemoveRoutes on one call."""

    def __init__(self, servicer: LocationServicer) -> None:
        self._servicer = servicer
        self.frames_port = 0  # offered to each stream, once the frames server listens

    async def Calls(
        self,
        request_iterator: AsyncIterator[stream_pb2.LocationCall],
        context: grpc.aio.ServicerContext,
    ) -> None:  # type: ignore[override]
        await serve_calls(
            request_iterator,
            context,
            self._answer,
            stream_pb2.LocationAnswer,
            LOCATION_STREAM_METHOD,
            self.frames_port,
        )

    def frames(self) -> Handler:
        return _frames_handler(
            stream_pb2.LocationCall.FromString,
            self._answer,
            stream_pb2.LocationAnswer,
            LOCATION_STREAM_METHOD,
        )

    async def _answer(self, item: stream_pb2.LocationCall) -> stream_pb2.LocationAnswer:
        which = item.WhichOneof("call")
        # the answer filled in place: a message given to a constructor is copied whole
        if which == "find_routes":
            answer = stream_pb2.LocationAnswer(id=item.id)
            convert.routes_into_pb(await self._servicer.found(item.find_routes), answer.routes)
            return answer
        if which == "add_route":
            if item.find_after_add:
                routes = await self._servicer.added_and_found(item.add_route)
                answer = stream_pb2.LocationAnswer(id=item.id, found_after_add=True)
                convert.routes_into_pb(routes, answer.routes)
                return answer
            await self._servicer.add_route(item.add_route)
        elif which == "remove_routes":
            await self._servicer.remove_routes(item.remove_routes)
        else:
            raise BadMessage("call: none given (add_route, find_routes or remove_routes)")
        return stream_pb2.LocationAnswer(id=item.id)


class Served:
    """A gRPC server and, beside it, the frames of its streams (sipgrid.services.frames)."""

    def __init__(self, server: grpc.aio.Server, frames: FramesServer | None) -> None:
        self.grpc = server
        self.frames = frames

    async def stop(self, grace: float | None) -> None:
        """Both stop at once, each given ``grace`` for what is in flight (not one after
        the other, which could take twice as long)."""
        if self.frames is None:
            await self.grpc.stop(grace)
            return
        _frames_servers.discard(self.frames)
        await asyncio.gather(self.frames.close(grace), self.grpc.stop(grace))

    async def wait_for_termination(self) -> bool:
        return await self.grpc.wait_for_termination()


async def start_server(
    bind_addr: str,
    *,
    processor: Processor | None = None,
    location: LocationService | None = None,
    service_name: str = "",
    registry: Registry | None = None,
    requester: EdgePort | None = None,
) -> Served:
    """A gRPC server on bind_addr with the given services and the standard health check."""
    server, _ = await start_server_bound(
        bind_addr,
        processor=processor,
        location=location,
        service_name=service_name,
        registry=registry,
        requester=requester,
    )
    return server


async def start_server_bound(
    bind_addr: str,
    *,
    processor: Processor | None = None,
    location: LocationService | None = None,
    service_name: str = "",
    registry: Registry | None = None,
    requester: EdgePort | None = None,
) -> tuple[Served, int]:
    """The same, and the port bound (the one the system picked for "host:0")."""
    interceptors = [*internal_interceptors(), MetricsInterceptor()]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    names = []
    streams: dict[str, StreamServicer | LocationStreamServicer] = {}
    if processor is not None:
        servicer = (
            DispatcherServicer(processor)
            if isinstance(processor, Dispatcher)
            else ProcessorServicer(processor)
        )
        processor_pb2_grpc.add_ProcessorServicer_to_server(servicer, server)
        streams[STREAM_SERVICE] = StreamServicer(servicer)
        stream_pb2_grpc.add_ProcessorStreamServicer_to_server(streams[STREAM_SERVICE], server)
        names += ["fonoster.routr.processor.v2beta1.Processor", STREAM_SERVICE]
        if isinstance(processor, Dispatcher):
            routes = RoutesServicer(processor)
            stream_pb2_grpc.add_DispatcherRoutesServicer_to_server(routes, server)
            names.append(ROUTES_SERVICE)
    if location is not None:
        location_servicer = LocationServicer(location)
        location_pb2_grpc.add_LocationServicer_to_server(location_servicer, server)
        streams[LOCATION_STREAM_SERVICE] = LocationStreamServicer(location_servicer)
        stream_pb2_grpc.add_LocationStreamServicer_to_server(
            streams[LOCATION_STREAM_SERVICE], server
        )
        names += ["fonoster.routr.location.v2beta1.Location", LOCATION_STREAM_SERVICE]
    if registry is not None:
        from sipgrid.services.registry.grpc import SERVICE, RegistryServicer

        registry_pb2_grpc.add_RegistryServicer_to_server(RegistryServicer(registry), server)
        names.append(SERVICE)
    if requester is not None:
        from sipgrid.services.requester.requester import SERVICE as REQUESTER
        from sipgrid.services.requester.requester import RequesterServicer

        requester_pb2_grpc.add_RequesterServicer_to_server(RequesterServicer(requester), server)
        names.append(REQUESTER)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = bind_grpc(server, bind_addr)
    frames = await _frames(bind_addr, streams) if streams else None
    await server.start()
    for name in [*names, service_name, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Served(server, frames), port


async def _frames(
    bind_addr: str, streams: dict[str, StreamServicer | LocationStreamServicer]
) -> FramesServer | None:
    """The frames of the streams, on FRAMES_BIND_ADDR or, by default, on the gRPC
    address's host at a port the system picks; None when SIPGRID_FRAMES is off."""
    settings = Settings.load()
    if not settings.frames:
        return None
    where = settings.frames_bind_addr or f"{_bind_host(bind_addr)}:0"
    host, _, port = where.rpartition(":")
    frames = FramesServer(
        {name: stream.frames() for name, stream in streams.items()}, service_token()
    )
    bound = await frames.start(host.strip("[]"), int(port))
    for stream in streams.values():
        stream.frames_port = bound
    _frames_servers.add(frames)
    return frames


def _bind_host(bind_addr: str) -> str:
    host = frames_host(bind_addr)
    if host is None:
        raise OSError(f"cannot serve frames beside gRPC on {bind_addr}: set FRAMES_BIND_ADDR")
    return host
