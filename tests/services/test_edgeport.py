"""The EdgePort on real loopback sockets, with in-process processors."""

from __future__ import annotations

import asyncio

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.grpc_clients import GrpcProcessor
from sipgrid.sip import Request, make_response, parse
from tests.e2e.harness import free_port
from tests.sip.helpers import torture

from .helpers import (
    CountingProcessor,
    FailingProcessor,
    connect_processor,
    edgeport_config,
    request_bytes,
    serving,
    udp_peer,
)


def test_retransmitted_invite_reaches_the_processor_once() -> None:
    async def scenario() -> None:
        processor = CountingProcessor(connect_processor())
        edgeport = EdgePort(edgeport_config(0), processor)
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            invite = request_bytes("INVITE", peer.port)
            peer.send(invite, port)
            assert (await peer.response()).status == 100
            first = await peer.response()
            assert first.status == 407
            peer.send(invite, port)  # a retransmission: same branch
            again = await peer.response()
            assert again.status == 407 and again.to.tag == first.to.tag
            peer.send(invite, port)
            assert (await peer.response()).status == 407
            assert processor.count["INVITE"] == 1
            assert edgeport.stats["retransmissions"] == 2
            # the ACK for the 407 is absorbed here, hop by hop
            ack = invite.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
            ack = ack.replace(
                b"To: <sip:1002@sip.local>", f"To: <sip:1002@sip.local>;tag={first.to.tag}".encode()
            )
            peer.send(ack, port)
            assert await peer.nothing()
            assert processor.count["ACK"] == 0
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_invalid_messages_get_400_and_the_server_keeps_serving() -> None:
    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0), connect_processor())
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            for name, status in [
                ("badinv01", 400),
                ("ltgtruri", 400),
                ("lwsstart", 400),
                ("mismatch01", 400),
                ("ncl", 400),
                ("quotbal", 400),
                ("badvers", 505),
                ("clerr", 400),
            ]:
                peer.send(torture(name), port)
                code, reason = await peer.status_line()
                assert code == status, name
                assert reason and reason != "Bad Request", (name, reason)
            for name in ("bigcode", "scalarlg"):  # malformed responses are dropped
                peer.send(torture(name), port)
            assert await peer.nothing()
            peer.send(request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1"), port)
            assert (await peer.response()).status == 200
            assert (
                edgeport.stats["malformed"] == 8
                and edgeport.stats["malformed_responses_dropped"] == 2
            )
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_oversized_datagram_gets_513() -> None:
    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0, maxMessageSize=1500), connect_processor())
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            big = request_bytes("OPTIONS", peer.port, extra="X-Padding: " + "a" * 2000 + "\r\n")
            peer.send(big, port)
            answer = await peer.response()
            assert answer.status == 513 and answer.call_id == "c1"
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_processor_down_or_failing_gives_503() -> None:
    async def scenario() -> None:
        for processor in (
            GrpcProcessor(f"127.0.0.1:{free_port()}", timeout=1.0),
            FailingProcessor(),
        ):
            edgeport = EdgePort(edgeport_config(0), processor)
            await edgeport.start()
            port = edgeport.listening_points[0].port
            peer = await udp_peer()
            try:
                peer.send(request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1"), port)
                answer = await peer.response(timeout=5.0)
                assert answer.status == 503
                assert edgeport.stats["processor_errors"] == 1
            finally:
                peer.close()
                await edgeport.stop()

    asyncio.run(scenario())


def test_max_forwards_zero_gives_483_and_unknown_method_405() -> None:
    async def scenario() -> None:
        processor = CountingProcessor(connect_processor())
        edgeport = EdgePort(edgeport_config(0, methods=["INVITE", "REGISTER"]), processor)
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            peer.send(request_bytes("INVITE", peer.port, max_forwards=0), port)
            assert (await peer.response()).status == 100
            assert (await peer.response()).status == 483
            peer.send(request_bytes("PUBLISH", peer.port, branch="z9hG4bKt2"), port)
            answer = await peer.response()
            assert answer.status == 405 and "INVITE" in (answer.get("Allow") or "")
            assert sum(processor.count.values()) == 0
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


class SelfForwarder:
    handles_responses = True
    """A processor that sends every request back to the EdgePort itself: a loop."""

    def __init__(self) -> None:
        self.port = 0

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        return MessageResponse(request.message, destination=NetInterface("127.0.0.1", self.port))


def test_loop_gives_482() -> None:
    async def scenario() -> None:
        processor = SelfForwarder()
        edgeport = EdgePort(edgeport_config(0), processor)
        await edgeport.start()
        port = processor.port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            peer.send(request_bytes("MESSAGE", peer.port), port)
            answer = await peer.response(timeout=5.0)
            assert answer.status == 482
            assert [v.host for v in answer.vias] == [
                "127.0.0.1"
            ] and answer.top_via.branch == "z9hG4bKt1"
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_tcp_keepalive_pong_and_malformed_stream() -> None:
    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0), connect_processor())
        await edgeport.start()
        port = edgeport.listening_points[0].port
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
            writer.write(
                request_bytes("OPTIONS", 5999, uri="sip:127.0.0.1").replace(b"UDP", b"TCP")
            )
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert data.startswith(b"SIP/2.0 200 OK")
            writer.write(
                b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nCall-ID: y\r\nCSeq: 1 OPTIONS\r\n\r\n"
            )
            data = await asyncio.wait_for(reader.read(4096), 2)
            assert data.startswith(b"SIP/2.0 400 Content-Length is required")
            assert await asyncio.wait_for(reader.read(), 2) == b""  # the stream is closed
            writer.close()
        finally:
            await edgeport.stop()

    asyncio.run(scenario())


def test_rport_and_received_are_stamped() -> None:
    async def scenario() -> None:
        captured: list[Request] = []

        class Capture:
            handles_responses = True

            async def process_message(self, request: MessageRequest) -> MessageResponse:
                assert isinstance(request.message, Request)
                captured.append(request.message)
                return await connect_processor().process_message(request)

        edgeport = EdgePort(edgeport_config(0), Capture())
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            data = request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1").replace(
                f"127.0.0.1:{peer.port}".encode(), b"10.9.9.9:5060"
            )
            peer.send(data, port)
            answer = await peer.response()
            via = answer.top_via
            assert via.received == "127.0.0.1" and via.rport == peer.port
            assert parse(captured[0].serialize()).top_via.rport == peer.port
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_received_is_stamped_without_rport_when_the_sent_by_differs() -> None:
    """RFC 3261 section 18.2.1: received whenever the sent-by host is not the source;
    rport is filled in only when the Via asks for it (RFC 3581). A Via that already
    carries received (stamped by a proxy before a retry, say) gets the true source in its
    place, each parameter keeping its place, and rport is filled in once."""

    async def scenario() -> None:
        edgeport, port = await serving(connect_processor())
        peer = await udp_peer()
        try:
            data = request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1").replace(
                f"127.0.0.1:{peer.port};branch=z9hG4bKt1;rport".encode(),
                b"10.9.9.9:5060;branch=z9hG4bKt1",
            )
            peer.send(data, port)
            via = (await peer.response()).top_via
            assert via.received == "127.0.0.1" and via.rport is None and not via.wants_rport
            same = request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1", branch="z9hG4bKt2")
            peer.send(same.replace(b";rport", b""), port)
            assert (await peer.response()).top_via.received is None  # sent-by is the source
            stale = request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1").replace(
                f"127.0.0.1:{peer.port};branch=z9hG4bKt1;rport".encode(),
                b"10.9.9.9:5060;Received=192.0.2.1;branch=z9hG4bKt3;RPORT;x",
            )
            peer.send(stale, port)
            via = (await peer.response()).top_via
            assert [name for name, _ in via.params] == ["received", "branch", "rport", "x"]
            assert via.received == "127.0.0.1" and via.rport == peer.port
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_a_request_without_call_id_gets_400_naming_it() -> None:
    async def scenario() -> None:
        edgeport, port = await serving(connect_processor())
        peer = await udp_peer()
        try:
            data = request_bytes("OPTIONS", peer.port, uri="sip:127.0.0.1").replace(
                b"Call-ID: c1\r\n", b""
            )
            peer.send(data, port)
            assert await peer.status_line() == (400, "missing Call-ID header")
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_options_to_an_agent_with_max_forwards_zero_gets_483() -> None:
    """The EdgePort lets OPTIONS with Max-Forwards 0 through (a server may answer it);
    the processor must not forward it."""

    async def scenario() -> None:
        edgeport, port = await serving(connect_processor())
        peer = await udp_peer()
        try:
            peer.send(request_bytes("OPTIONS", peer.port, max_forwards=0), port)
            assert (await peer.response()).status == 483
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


class SlowAnswer:
    """Answers 200 once told to."""

    handles_responses = True

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        await self.go.wait()
        assert isinstance(request.message, Request)
        return MessageResponse(make_response(request.message, 200, to_tag="slow"))


def test_a_response_whose_connection_closed_goes_to_the_sent_by_port() -> None:
    """RFC 3261 section 18.2.2: a new connection to the sent-by address and port, not to
    the rport of the dead connection; nothing lost without a word."""

    async def scenario() -> None:
        processor = SlowAnswer()
        edgeport, port = await serving(processor)
        arrived: asyncio.Queue[bytes] = asyncio.Queue()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            arrived.put_nowait(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        listener = await asyncio.start_server(accept, "127.0.0.1", 0)
        sent_by = listener.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            request = request_bytes("OPTIONS", sent_by, uri="sip:1002@sip.local")
            writer.write(request.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()  # the phone's connection goes away before the answer
            await asyncio.sleep(0.1)
            processor.go.set()
            answer = await asyncio.wait_for(arrived.get(), 3)
            assert answer.startswith(b"SIP/2.0 200 OK")
        finally:
            listener.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_the_core_s_timers_are_served_once_per_tick_even_when_the_loop_wakes_early() -> None:
    """The EdgePort asks the loop to wake it at the end of the tick (10 ms) in which the
    core's next deadline falls, and then serves every deadline up to that time: two
    unacknowledged 407s sent again at Timer G (0.5 s), 3 ms apart, take one wake-up.
    The loop's timers count whole milliseconds, so they may fire a little early: what was
    due by the time asked for is served then, not asked for again and again until the
    deadline passes (that cost the all-in-one some 14,000 wake-ups a second at 200
    calls/s). Here the clock stands between the two deadlines when the loop wakes, short
    of the tick's end."""
    now = [1000.001]

    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0), connect_processor(), clock=lambda: now[0])
        await edgeport.start()
        port = edgeport.listening_points[0].port
        peer = await udp_peer()
        wakeups = 0
        on_timer = edgeport._on_timer

        def counted() -> None:
            nonlocal wakeups
            wakeups += 1
            on_timer()

        edgeport._on_timer = counted  # type: ignore[method-assign]
        try:
            first: list[str | None] = []
            for branch, at in (("z9hG4bKg1", 1000.001), ("z9hG4bKg2", 1000.004)):
                now[0] = at
                peer.send(request_bytes("INVITE", peer.port, branch=branch), port)
                assert (await peer.response()).status == 100
                challenge = await peer.response()
                assert challenge.status == 407
                first.append(challenge.to.tag)
            now[0] = 1000.502  # Timer G: 1000.501 and 1000.504
            again = [await peer.response(), await peer.response()]  # never acknowledged
            assert sorted(r.to.tag or "" for r in again) == sorted(t or "" for t in first)
            assert all(r.status == 407 for r in again)
            assert wakeups == 1, wakeups
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())
