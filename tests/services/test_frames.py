"""sipgrid's frames (sipgrid/services/frames.py): a server offers its streams' calls on a
plain TCP connection, a client takes the offer and the gRPC stream ends; a client that
cannot reach the frames keeps to the stream; a connection must say which stream it is
for and give the service token; one that breaks the protocol is closed alone.
(tests/services/test_streams.py runs the streams' behaviour on the frames too.)"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest

from sipgrid.api import convert
from sipgrid.api.types import MessageResponse
from sipgrid.pb import stream_pb2
from sipgrid.services import frames, grpc_servers
from sipgrid.services.frames import frame, frames_host
from sipgrid.services.grpc_clients import STREAM_SERVICE, GrpcLocation, GrpcProcessor
from sipgrid.services.grpc_servers import start_server_bound
from sipgrid.services.location.service import MemoryLocation
from sipgrid.sip import Response, parse
from tests.e2e.harness import free_port

from .test_streams import Answering, options, route, served, until


async def welcome(
    port: int, hello: stream_pb2.FramesHello
) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the frames at ``port`` with ``hello``: the welcome's error, and the
    connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(hello))
    (size,) = struct.unpack("!I", await reader.readexactly(4))
    error = stream_pb2.FramesWelcome.FromString(await reader.readexactly(size)).error
    return error, reader, writer


def test_a_client_takes_the_offered_frames_and_its_grpc_stream_ends() -> None:
    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)
        before = served("ProcessorStream/ProcessMessages")
        try:
            replies = await asyncio.gather(
                *(processor.process_message(options(name)) for name in ("a", "slow", "b"))
            )
            assert [r.message.call_id.split("-")[0] for r in replies] == ["a", "slow", "b"]
            assert all(isinstance(r.message, Response) for r in replies)
            assert processor.framed
            assert server.frames is not None and len(server.frames._connections) == 1
            # counted as the stream's calls, where the dashboards look for them
            assert served("ProcessorStream/ProcessMessages") - before == 3
            for _ in range(100):  # the gRPC call that offered them has ended
                if not grpc_servers._open_streams:
                    break
                await asyncio.sleep(0.02)
            assert not grpc_servers._open_streams
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_frames_that_cannot_be_reached_leave_the_calls_on_the_grpc_stream() -> None:
    """As behind a load balancer that forwards the gRPC port alone."""

    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", location=MemoryLocation())
        assert server.frames is not None
        server.frames.end()  # the offer stands; nothing answers at its port
        location = GrpcLocation(f"127.0.0.1:{port}", stream=True)
        try:
            await location.add_route("sip:1001@sip.local", route(5070))
            (found,) = await location.find_routes("sip:1001@sip.local")
            assert found.port == 5070
            assert location.streams and not location.framed
        finally:
            await location.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_frames_connection_names_its_stream_and_gives_the_service_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        monkeypatch.setenv("SIPGRID_SERVICE_TOKEN", "s3cret")
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        assert server.frames is not None
        frames_port = server.frames.port
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)  # sends the token
        try:
            error, reader, _ = await welcome(
                frames_port, stream_pb2.FramesHello(service=STREAM_SERVICE)
            )
            assert error.startswith("UNAUTHENTICATED") and "x-sipgrid-token" in error
            assert await reader.read() == b""  # and closed
            error, _, _ = await welcome(
                frames_port, stream_pb2.FramesHello(service="sipgrid.Nothing", token="s3cret")
            )
            assert error.startswith("UNIMPLEMENTED") and "sipgrid.Nothing" in error
            reply = await processor.process_message(options("with-token"))
            assert isinstance(reply.message, Response) and processor.framed
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_connection_that_breaks_the_protocol_is_closed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(frames, "HELLO_TIMEOUT", 0.3)

    async def scenario() -> None:
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        assert server.frames is not None
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)
        try:
            await processor.process_message(options("first"))
            hello = stream_pb2.FramesHello(service=STREAM_SERVICE)
            error, reader, writer = await welcome(server.frames.port, hello)
            assert error == ""
            writer.write(struct.pack("!I", 0xFFFFFFFF))  # a frame longer than any call
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
            # a call before any hello: read as a hello naming no stream, and refused
            reader, writer = await asyncio.open_connection("127.0.0.1", server.frames.port)
            writer.write(frame(stream_pb2.StreamRequest(id=1)))
            refused = await asyncio.wait_for(reader.read(), 5)  # to the end: closed
            assert b"UNIMPLEMENTED" in refused
            # nothing at all: closed when the hello is due
            reader, writer = await asyncio.open_connection("127.0.0.1", server.frames.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            reply = await processor.process_message(options("after"))
            assert isinstance(reply.message, Response) and processor.framed
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("connect:51904", "connect"),
        ("127.0.0.1:5", "127.0.0.1"),
        ("[::1]:51904", "::1"),
        ("dns:///connect:51904", None),
        ("unix:/run/sipgrid.sock", None),
        ("connect", None),
    ],
)
def test_the_frames_are_sought_on_the_host_that_grpc_reached(target: str, host: str | None) -> None:
    assert frames_host(target) == host


def test_the_frames_listen_where_frames_bind_addr_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed port, for a Service or a firewall to let through (deploy/k8s: gRPC + 10)."""

    async def scenario() -> None:
        wanted = free_port()
        monkeypatch.setenv("FRAMES_BIND_ADDR", f"127.0.0.1:{wanted}")
        server, port = await start_server_bound("127.0.0.1:0", location=MemoryLocation())
        location = GrpcLocation(f"127.0.0.1:{port}", stream=True)
        try:
            assert server.frames is not None and server.frames.port == wanted
            await location.add_route("sip:1001@sip.local", route(5070))
            assert location.framed
        finally:
            await location.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_with_frames_off_a_server_offers_none(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        monkeypatch.setenv("SIPGRID_FRAMES", "0")
        server, port = await start_server_bound("127.0.0.1:0", processor=Answering())
        monkeypatch.setenv("SIPGRID_FRAMES", "1")  # a client that would take them
        processor = GrpcProcessor(f"127.0.0.1:{port}", stream=True)
        try:
            assert server.frames is None
            reply = await processor.process_message(options("plain"))
            assert isinstance(reply.message, Response)
            assert processor.streams and not processor.framed
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_frame_that_comes_in_pieces_is_read_whole_and_a_strangers_is_kept_small() -> None:
    async def scenario() -> None:
        server, _ = await start_server_bound("127.0.0.1:0", processor=Answering())
        assert server.frames is not None
        try:
            hello = stream_pb2.FramesHello(service=STREAM_SERVICE)
            error, reader, writer = await welcome(server.frames.port, hello)
            assert error == ""
            call = stream_pb2.StreamRequest(
                id=5, request=convert.request_to_pb(options("pieces"), typed=False)
            )
            data = frame(call)
            for piece in (data[:2], data[2:7], data[7:100], data[100:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)
            (size,) = struct.unpack("!I", await reader.readexactly(4))
            answer = stream_pb2.StreamResponse.FromString(await reader.readexactly(size))
            assert answer.id == 5 and not answer.error_code
            assert parse(answer.response.message.raw).call_id.startswith("pieces-")
            # before its hello, a connection may not send a long frame (nor hold memory)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.frames.port)
            writer.write(struct.pack("!I", 100_000) + b"x" * 10)
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_a_message_submitted_on_the_frames_is_answered_to_a_function() -> None:
    """GrpcProcessor.submit, the EdgePort's way without a task per message: nothing is
    sent (False) until the frames are open; then each answer comes to its function as its
    frame is read, a function that raises does not break the connection, a call that
    gets no answer is settled by its timer, and the connection's end settles the rest,
    each with None."""

    async def scenario() -> None:
        answering = Answering()
        server, port = await start_server_bound("127.0.0.1:0", processor=answering)
        processor = GrpcProcessor(f"127.0.0.1:{port}", timeout=0.5, stream=True)
        got: dict[str, object] = {}

        def keep(name: str) -> Callable[[MessageResponse | None], None]:
            def done(result: MessageResponse | None) -> None:
                got[name] = result.message.call_id if result is not None else None
                if name == "raises":
                    raise RuntimeError("a bug in the function")

            return done

        try:
            assert not processor.submit(options("early"), keep("early"))  # no frames yet
            await processor.process_message(options("opens"))
            assert processor.framed
            for name in ("raises", "slow", "a", "never"):
                assert processor.submit(options(name), keep(name))
            assert got == {}  # answers come on later turns, as their frames are read
            await until(lambda: "slow" in got)
            assert got == {"raises": "raises-1", "a": "a-1", "slow": "slow-1"}
            assert answering.finished[-3:] == ["raises-1", "a-1", "slow-1"]
            await until(lambda: "never" in got)  # its timer, 0.5 s
            assert got["never"] is None
            assert processor.submit(options("b"), keep("b"))  # the connection is still up
            await until(lambda: "b" in got)
            assert got["b"] == "b-1"
            assert processor.submit(options("never-2"), keep("lost"))
            await server.stop(None)  # its frames end with it
            await until(lambda: "lost" in got)
            assert got["lost"] is None
            assert not processor.submit(options("after"), keep("after"))
        finally:
            await processor.close()
            await server.stop(None)

    asyncio.run(scenario())
