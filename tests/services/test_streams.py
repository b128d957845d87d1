"""sipgrid's streams (proto/stream.proto), to a processor and to Location: many calls on
one gRPC call, answered by id in any order; unary calls (to a processor, with Routr's
typed fields) to a server that does not serve them; a call that fails or times out
fails alone; a stream that breaks is opened again. Each test runs twice: with the
streams' calls on the frames that the servers offer (frames.py), and on the gRPC
streams alone (SIPGRID_FRAMES=0)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from sipgrid.api import convert
from sipgrid.api.types import (
    LocationService,
    MessageRequest,
    MessageResponse,
    NetInterface,
    ProcessorUnavailable,
    Route,
    Transport,
)
from sipgrid.pb import (
    location_pb2_grpc,
    processor_pb2,
    processor_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
)
from sipgrid.services import grpc_servers
from sipgrid.services.dispatcher.dispatcher import Dispatcher, DispatcherConfig
from sipgrid.services.grpc_clients import DirectRoutes, GrpcLocation, GrpcProcessor
from sipgrid.services.grpc_options import SERVER_OPTIONS, TOKEN_HEADER
from sipgrid.services.grpc_servers import (
    LocationServicer,
    LocationStreamServicer,
    ProcessorServicer,
    end_streams,
    start_server_bound,
)
from sipgrid.services.location.service import MemoryLocation
from sipgrid.services.metrics import SERVED_CALLS, MetricsInterceptor
from sipgrid.sip import Request, Response, make_response, parse

from .helpers import Noted, request_bytes


@pytest.fixture(autouse=True, params=["frames", "grpc"])
def carried_on(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """What the streams' calls travel on in this run: the frames, or the gRPC streams."""
    monkeypatch.setenv("SIPGRID_FRAMES", "1" if request.param == "frames" else "0")
    return str(request.param)


class Answering:
    """Answers 200 with the request's Call-ID; a Call-ID with "slow" waits 0.3 s first,
    one with "never" never answers. Keeps the order it finished in."""

    handles_responses = False

    def __init__(self) -> None:
        self.finished: list[str] = []

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        assert isinstance(message, Request)
        if "never" in message.call_id:
            await asyncio.Event().wait()
        if "slow" in message.call_id:
            await asyncio.sleep(0.3)
        self.finished.append(message.call_id)
        return MessageResponse(make_response(message, 200, to_tag="t1"))


class Recording(ProcessorServicer):
    """Routr's Processor service alone (no stream), noting the Call-ID's typed field."""

    def __init__(self) -> None:
        super().__init__(Answering())
        self.typed_call_ids: list[str] = []

    async def ProcessMessage(
        self,
        request: processor_pb2.MessageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> processor_pb2.MessageResponse:
        self.typed_call_ids.append(request.message.call_id.call_id)
        return await super().ProcessMessage(request, context)


def options(call_id: str) -> MessageRequest:
    message = parse(request_bytes("OPTIONS", 5999, uri="sip:127.0.0.1", call_id=f"{call_id}-1"))
    return MessageRequest(
        "c1",
        "ep",
        "OPTIONS",
        NetInterface("127.0.0.1", 5999),
        [NetInterface("127.0.0.1", 5060, Transport.UDP)],
        message,
    )


def served(method: str, code: str = "OK") -> float:
    return float(SERVED_CALLS.get((method, code), 0))


def test_messages_share_one_stream_and_are_answered_in_any_order(carried_on: str) -> None:
    async def scenario() -> None:
        answering = Answering()
        server, port = await start_server_bound("127.0.0.1:0", processor=answering)
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)
        streamed, unary = (
            served("ProcessorStream/ProcessMessages"),
            served("Processor/ProcessMessage"),
        )
        try:
            replies = await asyncio.gather(
                *(processor.process_message(options(name)) for name in ("slow", "a", "b"))
            )
            for name, reply in zip(("slow", "a", "b"), replies, strict=True):
                assert isinstance(reply.message, Response) and reply.message.status == 200
                assert reply.message.call_id.startswith(f"{name}-")
            # the slow one did not hold the others back
            assert [c.split("-")[0] for c in answering.finished] == ["a", "b", "slow"]
            assert processor.framed is (carried_on == "frames")
            assert processor.streams and not processor.handles_responses
            assert served("ProcessorStream/ProcessMessages") - streamed == 3
            assert served("Processor/ProcessMessage") == unary
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_server_without_the_stream_gets_unary_calls_with_routrs_fields() -> None:
    async def scenario() -> None:
        servicer = Recording()
        server = grpc.aio.server(options=SERVER_OPTIONS)
        processor_pb2_grpc.add_ProcessorServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)
        try:
            for name in ("first", "second"):
                reply = await processor.process_message(options(name))
                assert isinstance(reply.message, Response) and reply.message.status == 200
            assert not processor.streams  # UNIMPLEMENTED once, then unary calls only
            assert [c.split("-")[0] for c in servicer.typed_call_ids] == ["first", "second"]
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_failed_or_late_message_fails_alone_and_a_broken_stream_opens_again(
    carried_on: str,
) -> None:
    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        address = f"127.0.0.1:{port}"
        processor = GrpcProcessor(address, timeout=0.5, stream=True)
        try:
            with pytest.raises(ProcessorUnavailable, match="DEADLINE_EXCEEDED"):
                await processor.process_message(options("never"))
            bad = processor_pb2.MessageRequest(ref="x")
            bad.message.raw = b"not SIP at all"
            with pytest.raises(ProcessorUnavailable, match="INVALID_ARGUMENT: message"):
                await processor.process_pb(bad, typed=False)
            reply = await processor.process_message(options("after"))
            assert isinstance(reply.message, Response) and processor.streams

            waiting = asyncio.ensure_future(processor.process_message(options("never")))
            await asyncio.sleep(0.1)
            await server.stop(None)  # in flight: fails, as a unary call would
            with pytest.raises(ProcessorUnavailable):
                await waiting
            server, _ = await start_server_bound(address, processor=Answering())
            reply = await processor.process_message(options("again"))
            assert isinstance(reply.message, Response) and reply.message.status == 200
            assert processor.streams
            assert processor.framed is (carried_on == "frames")
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_stopping_server_ends_its_streams_and_still_answers_what_is_in_flight(
    carried_on: str,
) -> None:
    """A client keeps its stream open while it runs: a server stopped on its own (a
    restart) would wait out its whole grace for it. end_streams, at stop, ends each stream
    (and each frames connection) once what is in flight is answered."""

    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)

        def still_open() -> bool:
            if carried_on == "frames":
                assert server.frames is not None
                return bool(server.frames._connections)
            return bool(grpc_servers._open_streams)

        try:
            await processor.process_message(options("first"))  # the stream is open
            assert still_open()
            waiting = asyncio.ensure_future(processor.process_message(options("slow")))
            await asyncio.sleep(0.1)
            end_streams()
            reply = await waiting
            assert isinstance(reply.message, Response) and reply.message.status == 200
            for _ in range(200):  # the handler returns once the answer is written
                if not still_open():
                    break
                await asyncio.sleep(0.05)
            assert not still_open()
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_through_the_dispatcher_a_unary_caller_gets_routrs_fields_the_stream_raw_only() -> None:
    async def scenario() -> None:
        connect, connect_port = await start_server_bound("127.0.0.1:0", processor=Answering())
        config = DispatcherConfig.model_validate(
            {
                "kind": "MessageDispatcher",
                "spec": {
                    "processors": [
                        {
                            "ref": "connect",
                            "addr": f"127.0.0.1:{connect_port}",
                            "methods": ["OPTIONS"],
                        }
                    ]
                },
            }
        )
        downstream: list[GrpcProcessor] = []

        def to(ref: str, addr: str) -> GrpcProcessor:
            downstream.append(GrpcProcessor(addr, stream=True))
            return downstream[-1]

        dispatcher, port = await start_server_bound("127.0.0.1:0", processor=Dispatcher(config, to))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = convert.request_to_pb(options("unary"))
                reply = await processor_pb2_grpc.ProcessorStub(channel).ProcessMessage(request)
                # Connect answered on the stream (raw alone); Routr's EdgePort reads these
                assert reply.message.call_id.call_id.startswith("unary-")
                assert reply.message.status_code == 200 and reply.message.raw
                assert downstream[0].streams

                call = stream_pb2_grpc.ProcessorStreamStub(channel).ProcessMessages()
                await call.write(
                    stream_pb2.StreamRequest(
                        id=7, request=convert.request_to_pb(options("streamed"), typed=False)
                    )
                )
                answer = await call.read()
                assert isinstance(answer, stream_pb2.StreamResponse)
                assert answer.id == 7 and not answer.error_code
                assert answer.response.message.call_id.call_id == ""  # nothing reads them
                assert parse(answer.response.message.raw).call_id.startswith("streamed-")
                await call.done_writing()
        finally:
            for processor in downstream:
                await processor.close()
            await dispatcher.stop(None)
            await connect.stop(None)

    asyncio.run(scenario())


def test_the_stream_needs_the_service_token_when_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        monkeypatch.setenv("SIPGRID_SERVICE_TOKEN", "s3cret")
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = stream_pb2_grpc.ProcessorStreamStub(channel).ProcessMessages()
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call.read()
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert TOKEN_HEADER in (refused.value.details() or "")
            processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)  # sends the token
            reply = await processor.process_message(options("with-token"))
            assert isinstance(reply.message, Response) and processor.streams
            await processor.close()
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def route(port: int) -> Route:
    return Route(
        user="1001",
        host="127.0.0.1",
        port=port,
        transport=Transport.UDP,
        expires=60,
        contact_uri=f"sip:1001@127.0.0.1:{port}",
    )


def test_location_calls_go_on_one_stream_and_a_bad_one_fails_alone(carried_on: str) -> None:
    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", location=MemoryLocation())
        location = GrpcLocation(f"127.0.0.1:{port}", stream=True)
        streamed = served("LocationStream/Calls")
        unary = [served(f"Location/{m}") for m in ("AddRoute", "FindRoutes", "RemoveRoutes")]
        aor = "sip:1001@sip.local"
        try:
            await asyncio.gather(
                location.add_route(aor, route(5070)), location.add_route(aor, route(5071))
            )
            found = await location.find_routes(aor, "call-1")
            assert sorted(r.port for r in found) == [5070, 5071]
            with pytest.raises(ProcessorUnavailable, match="INVALID_ARGUMENT: aor"):
                await location.add_route("", route(5072))
            await location.remove_routes(aor)
            assert await location.find_routes(aor) == []
            assert location.streams
            assert location.framed is (carried_on == "frames")
            assert served("LocationStream/Calls") - streamed == 5
            assert served("LocationStream/Calls", "INVALID_ARGUMENT") >= 1
            assert [
                served(f"Location/{m}") for m in ("AddRoute", "FindRoutes", "RemoveRoutes")
            ] == unary
        finally:
            await location.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_location_without_the_stream_gets_unary_calls() -> None:
    async def scenario() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[MetricsInterceptor()])
        location_pb2_grpc.add_LocationServicer_to_server(LocationServicer(MemoryLocation()), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        location = GrpcLocation(f"127.0.0.1:{port}", stream=True)
        finds = served("Location/FindRoutes")
        try:
            await location.add_route("sip:1001@sip.local", route(5070))
            (found,) = await location.find_routes("sip:1001@sip.local")
            assert found.port == 5070
            assert not location.streams
            assert served("Location/FindRoutes") - finds == 1
            # a failure looks as it does on the stream: ProcessorUnavailable with the code
            with pytest.raises(ProcessorUnavailable, match="INVALID_ARGUMENT: aor"):
                await location.add_route("", route(5072))
        finally:
            await location.close()
            await server.stop(None)

    asyncio.run(scenario())


class OlderLocationStream(LocationStreamServicer):
    """The Location stream of a sipgrid from before ``find_after_add``: it reads no such
    field, so its answer to an add_route carries no routes."""

    async def _answer(self, item: stream_pb2.LocationCall) -> stream_pb2.LocationAnswer:
        item.find_after_add = False
        return await super()._answer(item)


def test_a_binding_and_the_routes_after_it_come_in_one_call() -> None:
    """A registrar's 200 lists the AOR's routes after its binding: on the stream, the
    add_route brings them back (one round trip, not two), and the Location service asks
    its store for both at once (on Redis, one round trip fewer there too); from a
    Location that predates that, or without the stream, a find_routes follows, and the
    routes are the same."""

    async def scenario(kind: str) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[MetricsInterceptor()])
        store = Noted(MemoryLocation())
        servicer = LocationServicer(cast(LocationService, store))
        location_pb2_grpc.add_LocationServicer_to_server(servicer, server)
        if kind != "unary":
            stream = (OlderLocationStream if kind == "older" else LocationStreamServicer)(servicer)
            stream_pb2_grpc.add_LocationStreamServicer_to_server(stream, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        location = GrpcLocation(f"127.0.0.1:{port}", stream=True)
        aor = "sip:1001@sip.local"
        methods = ("LocationStream/Calls", "Location/AddRoute", "Location/FindRoutes")
        before = [served(m) for m in methods]
        try:
            await location.add_route(aor, route(5070))
            found = await location.add_route_and_find(aor, route(5071))
            assert [r.port for r in found] == [5071, 5070], kind  # newest first
            calls = [served(m) - b for m, b in zip(methods, before, strict=True)]
            expected = {"stream": [2, 0, 0], "older": [3, 0, 0], "unary": [0, 2, 1]}
            assert calls == expected[kind]
            # what the Location service asked its store
            if kind == "stream":
                assert (store.changes, store.finds) == (["add_route", "add_route_and_find"], [])
            else:
                assert (store.changes, store.finds) == (["add_route", "add_route"], [aor])
        finally:
            await location.close()
            await server.stop(None)

    for kind in ("stream", "older", "unary"):
        asyncio.run(scenario(kind))


class CountingProcessor(GrpcProcessor):
    """The Dispatcher's client of a processor, counting what the Dispatcher passes on."""

    passed_on = 0

    async def process_pb(
        self,
        request: processor_pb2.MessageRequest,
        typed: bool = True,
        item: stream_pb2.StreamRequest | None = None,
    ) -> processor_pb2.MessageResponse:
        CountingProcessor.passed_on += 1
        return await super().process_pb(request, typed, item)


def dispatcher_config(
    connect: str, middleware: str | None = None, methods: list[str] | None = None
) -> DispatcherConfig:
    """MESSAGEs to sip:echo@ go to an echo (a match rule that reads the message), the rest
    of MESSAGE, OPTIONS and REGISTER to Connect (a rule that is always true)."""
    return DispatcherConfig.model_validate(
        {
            "kind": "MessageDispatcher",
            "spec": {
                "processors": [
                    {
                        "ref": "echo",
                        "addr": connect,
                        "methods": ["MESSAGE"],
                        "matchFunc": "req => req.message.requestUri.user === 'echo'",
                    },
                    {
                        "ref": "connect",
                        "addr": connect,
                        "methods": ["MESSAGE", "OPTIONS", "REGISTER"],
                        "matchFunc": "req => true",
                    },
                ],
                "middlewares": [{"ref": "gate", "addr": middleware, "methods": methods or []}]
                if middleware
                else [],
            },
        }
    )


async def until(condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within 5 s")


def message(call_id: str) -> MessageRequest:
    raw = request_bytes("MESSAGE", 5999, uri="sip:1002@sip.local", call_id=f"{call_id}-1")
    request = options(call_id)
    return MessageRequest(
        "c2", "ep", "MESSAGE", request.sender, request.listening_points, parse(raw)
    )


def test_an_edgeport_sends_what_the_dispatcher_would_pass_on_straight_to_the_processor() -> None:
    """The Dispatcher's direct routes (DispatcherRoutes/Watch): OPTIONS and REGISTER go
    straight to Connect once the table has come and Connect has answered its health
    check; MESSAGE, whose first route reads the message, still goes through the
    Dispatcher; when the Dispatcher stops, everything goes its way again."""

    async def scenario() -> None:
        answering = Answering()
        connect, connect_port = await start_server_bound("127.0.0.1:0", processor=answering)
        address = f"127.0.0.1:{connect_port}"
        config = dispatcher_config(address)
        assert Dispatcher(config, lambda ref, addr: CountingProcessor(addr)).direct_addresses() == {
            "OPTIONS": address,
            "REGISTER": address,
        }
        server, port = await start_server_bound(
            "127.0.0.1:0", processor=Dispatcher(config, lambda ref, addr: CountingProcessor(addr))
        )
        edgeport = GrpcProcessor(f"127.0.0.1:{port}", stream=True, direct=True)
        try:
            before = CountingProcessor.passed_on
            await edgeport.process_message(options("first"))  # starts the watch
            assert CountingProcessor.passed_on == before + 1
            assert edgeport._direct is not None
            direct = edgeport._direct
            await until(lambda: direct.route("OPTIONS") is not None)
            for name in ("a", "b", "c"):
                reply = await edgeport.process_message(options(name))
                assert isinstance(reply.message, Response) and reply.message.status == 200
            assert CountingProcessor.passed_on == before + 1  # none through the Dispatcher
            assert [c.split("-")[0] for c in answering.finished] == ["first", "a", "b", "c"]
            assert not edgeport.handles_responses
            await edgeport.process_message(message("m"))
            assert CountingProcessor.passed_on == before + 2  # its first route reads it

            end_streams()
            await server.stop(None)
            await until(lambda: direct.route("OPTIONS") is None)
        finally:
            await edgeport.close()
            await server.stop(None)
            await connect.stop(None)

    asyncio.run(scenario())


@contextlib.asynccontextmanager
async def watching(config: DispatcherConfig) -> AsyncIterator[tuple[GrpcProcessor, DirectRoutes]]:
    """A Dispatcher served with ``config``, and an EdgePort's processor watching its
    direct routes (the watch started)."""
    server, port = await start_server_bound(
        "127.0.0.1:0", processor=Dispatcher(config, lambda ref, addr: CountingProcessor(addr))
    )
    edgeport = GrpcProcessor(f"127.0.0.1:{port}", stream=True, direct=True)
    try:
        assert edgeport._direct is not None
        edgeport._direct.route("OPTIONS")  # starts the watch
        yield edgeport, edgeport._direct
    finally:
        await edgeport.close()
        await server.stop(None)


def test_a_middleware_takes_the_direct_routes_of_its_methods_and_keeps_the_responses() -> None:
    """A middleware reads every message of its methods (all by default): no direct routes
    for those, and responses still go to the Dispatcher."""

    async def scenario() -> None:
        assert (
            Dispatcher(
                dispatcher_config("127.0.0.1:1", "127.0.0.1:2"),
                lambda ref, addr: CountingProcessor(addr),
            ).direct_addresses()
            == {}
        )
        # a middleware for INVITE alone: OPTIONS goes direct, responses to the Dispatcher
        connect, connect_port = await start_server_bound("127.0.0.1:0", processor=Answering())
        config = dispatcher_config(f"127.0.0.1:{connect_port}", "127.0.0.1:2", ["INVITE"])
        try:
            async with watching(config) as (edgeport, direct):
                await until(lambda: direct.route("OPTIONS") is not None)
                before = CountingProcessor.passed_on
                reply = await edgeport.process_message(options("relayed"))
                assert isinstance(reply.message, Response) and reply.message.status == 200
                assert CountingProcessor.passed_on == before and edgeport.handles_responses
        finally:
            await connect.stop(None)

    asyncio.run(scenario())


def test_a_processor_not_answering_from_the_edgeport_gets_no_direct_route_until_it_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A processor that does not answer its health check from the EdgePort gets its
    requests through the Dispatcher until it does."""
    monkeypatch.setattr(DirectRoutes, "RECHECK", 0.1)

    async def scenario() -> None:
        # the Dispatcher's table names a Connect that is not up yet
        placeholder, connect_port = await start_server_bound("127.0.0.1:0", processor=Answering())
        await placeholder.stop(None)
        address = f"127.0.0.1:{connect_port}"
        connect = None
        try:
            async with watching(dispatcher_config(address)) as (_, direct):
                await until(lambda: bool(direct._processors))  # the table came
                await asyncio.sleep(0.5)
                assert direct.route("OPTIONS") is None
                connect, _ = await start_server_bound(address, processor=Answering())
                await until(lambda: direct.route("OPTIONS") is not None)
        finally:
            if connect is not None:
                await connect.stop(None)

    asyncio.run(scenario())


def test_a_server_without_the_watch_is_not_asked_again() -> None:
    """A processor served without the watch (Connect, or Routr's Dispatcher) answers
    UNIMPLEMENTED: the messages go to it, and the EdgePort does not ask again."""

    async def scenario() -> None:
        plain, plain_port = await start_server_bound("127.0.0.1:0", processor=Answering())
        edgeport = GrpcProcessor(f"127.0.0.1:{plain_port}", stream=True, direct=True)
        try:
            reply = await edgeport.process_message(options("plain"))
            assert isinstance(reply.message, Response) and reply.message.status == 200
            assert edgeport._direct is not None and edgeport._direct._watcher is not None
            watcher = edgeport._direct._watcher
            await until(watcher.done)
            assert watcher.exception() is None and edgeport._direct.route("OPTIONS") is None
        finally:
            await edgeport.close()
            await plain.stop(None)

    asyncio.run(scenario())
