"""Connection limits on real sockets: idle and junk connections are closed, a source
may hold only so many connections, a connection that registered may stay quiet."""

from __future__ import annotations

import asyncio

from .helpers import connect_processor, request_bytes, serving


async def closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except TimeoutError:
        return False


def test_idle_and_junk_connections_are_closed_busy_ones_stay() -> None:
    async def scenario() -> None:
        edgeport, port = await serving(connect_processor(), limits={"idleTimeout": 1.0})
        try:
            idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)
            junk_reader, junk = await asyncio.open_connection("127.0.0.1", port)
            junk.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h")  # never finished
            busy_reader, busy = await asyncio.open_connection("127.0.0.1", port)
            options = request_bytes("OPTIONS", 5999, uri="sip:127.0.0.1").replace(b"UDP", b"TCP")
            for n in range(6):  # a whole message every half second
                busy.write(options.replace(b"z9hG4bKt1", f"z9hG4bKb{n}".encode()))
                await asyncio.sleep(0.5)
            assert await closed(idle_reader, 3.0)
            assert await closed(junk_reader, 3.0)
            busy.write(options.replace(b"z9hG4bKt1", b"z9hG4bKlast"))
            assert not await closed(busy_reader, 0.3)  # answers keep coming, not EOF
            assert edgeport.stats["idle_connections_closed"] >= 2
            for writer in (idle, junk, busy):
                writer.close()
        finally:
            await edgeport.stop()

    asyncio.run(scenario())


def test_a_source_holds_only_so_many_connections() -> None:
    async def scenario() -> None:
        edgeport, port = await serving(connect_processor(), limits={"maxConnectionsPerSource": 2})
        try:
            first = await asyncio.open_connection("127.0.0.1", port)
            second = await asyncio.open_connection("127.0.0.1", port)
            third_reader, third = await asyncio.open_connection("127.0.0.1", port)
            assert await closed(third_reader, 2.0)
            other_reader, other = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            assert not await closed(other_reader, 0.3)  # another source is welcome
            assert edgeport.stats["connections_refused"] == 1
            for _, writer in (first, second):
                writer.close()
            third.close()
            other.close()
        finally:
            await edgeport.stop()

    asyncio.run(scenario())
