"""What one message and its answer cost on a long-lived stream between two processes: a
grpc.aio bidirectional stream (what sipgrid's services use between them, proto/stream.proto)
against a plain asyncio TCP stream with a 4-byte length before each message.

The distributed wiring spends most of its CPU passing SIP messages between its services
(bench/README.md, "The distributed wiring's streams"). This measures that cost alone, with
no SIP in it: a client writes a 900-byte message (about a SIP request's size) and waits for
the server to send it back, ``BENCH_STREAM_MESSAGES`` times at each of
``BENCH_STREAM_RATES`` round trips a second (paced, as SIP traffic is, not back to back).
The server and the client run in processes of their own, both on uvloop as sipgrid's
services are; each side's CPU over the stream's life (user and system, from getrusage) is
divided by the round trips. The client's figure includes its pacing (a timer per message),
the same for every stream. gRPC's stream is measured twice: on gRPC's default I/O layer
(its EventEngine) and on the older one that the ``sipgrid`` command chooses
(``sipgrid.cli.GRPC_EXPERIMENTS``). Written to bench/results/grpc_stream.json.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.queues import Queue
from pathlib import Path

import grpc
import uvloop

from sipgrid.cli import GRPC_EXPERIMENTS
from tests.e2e.harness import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "grpc_stream.json"
MESSAGES = int(os.environ.get("BENCH_STREAM_MESSAGES", "3000"))
RATES = [int(r) for r in os.environ.get("BENCH_STREAM_RATES", "500,2000").split(",")]
PAYLOAD = b"x" * 900
METHOD = "/bench.Echo/Echo"
LENGTH = struct.Struct("!I")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _same(data: bytes) -> bytes:
    return data


async def _grpc_server(port: int, report: Queue[float]) -> None:
    ended = asyncio.Event()

    async def echo(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        started = _cpu()
        async for message in requests:
            yield message
        report.put(_cpu() - started)
        ended.set()

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.stream_stream_rpc_method_handler(echo, _same, _same)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    report.put(0.0)  # up
    await ended.wait()
    await server.stop(0)


async def _plain_server(port: int, report: Queue[float]) -> None:
    ended = asyncio.Event()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = _cpu()
        try:
            while True:
                (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
                writer.write(LENGTH.pack(size) + await reader.readexactly(size))
        except asyncio.IncompleteReadError:  # the client is done
            report.put(_cpu() - started)
            writer.close()
            ended.set()

    server = await asyncio.start_server(echo, "127.0.0.1", port)
    report.put(0.0)  # up
    await ended.wait()
    server.close()


async def _paced(rate: int, round_trip: Callable[[], Awaitable[None]]) -> float:
    """CPU of ``MESSAGES`` round trips at ``rate`` a second, after one to warm up."""
    await round_trip()
    started, due = _cpu(), time.monotonic()
    for _ in range(MESSAGES):
        await round_trip()
        due += 1 / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    return _cpu() - started


async def _grpc_client(port: int, rate: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.stream_stream(
            METHOD, request_serializer=_same, response_deserializer=_same
        )()

        async def round_trip() -> None:
            await stream.write(PAYLOAD)
            await stream.read()

        spent = await _paced(rate, round_trip)
        await stream.done_writing()
        return spent


async def _plain_client(port: int, rate: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def round_trip() -> None:
        writer.write(LENGTH.pack(len(PAYLOAD)) + PAYLOAD)
        (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        await reader.readexactly(size)

    spent = await _paced(rate, round_trip)
    writer.close()
    return spent


SERVERS = {"grpc": _grpc_server, "plain": _plain_server}
CLIENTS = {"grpc": _grpc_client, "plain": _plain_client}
# what is measured: name -> (the stream, GRPC_EXPERIMENTS in both processes; gRPC reads
# it when it is first imported, so each side is a process spawned with it)
KINDS = {
    "grpc": ("grpc", ""),  # gRPC's defaults
    "grpc_sipgrid": ("grpc", GRPC_EXPERIMENTS),  # as the sipgrid command runs it
    "plain": ("plain", ""),
}


def _serve(kind: str, port: int, report: Queue[float]) -> None:
    uvloop.install()
    asyncio.run(SERVERS[kind](port, report))


def _call(kind: str, port: int, rate: int, report: Queue[float]) -> None:
    uvloop.install()
    report.put(asyncio.run(CLIENTS[kind](port, rate)))


def measure(name: str, rate: int) -> dict[str, float]:
    """µs of CPU per round trip on each side, one stream of ``name`` at ``rate``."""
    kind, experiments = KINDS[name]
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    served: Queue[float] = spawn.Queue()
    called: Queue[float] = spawn.Queue()
    seconds = MESSAGES / rate + 30  # the client's run, and more
    before = os.environ.get("GRPC_EXPERIMENTS")
    os.environ["GRPC_EXPERIMENTS"] = experiments  # for the processes spawned here
    try:
        server = spawn.Process(target=_serve, args=(kind, port, served))
        client = spawn.Process(target=_call, args=(kind, port, rate, called))
        server.start()
        try:
            served.get(timeout=30)  # up
            client.start()
            client_cpu = called.get(timeout=seconds)
            server_cpu = served.get(timeout=seconds)
        finally:
            for process in (client, server):
                if process.pid is not None:
                    process.join(timeout=30)
                    if process.is_alive():
                        process.kill()
    finally:
        if before is None:
            del os.environ["GRPC_EXPERIMENTS"]
        else:
            os.environ["GRPC_EXPERIMENTS"] = before
    return {
        "client_us": round(1e6 * client_cpu / MESSAGES, 1),
        "server_us": round(1e6 * server_cpu / MESSAGES, 1),
    }


def main() -> None:
    print("one message and its answer on a stream, µs of CPU per round trip:", flush=True)
    report: dict[str, object] = {"messages": MESSAGES, "bytes": len(PAYLOAD)}
    for rate in RATES:
        for name in KINDS:
            found = measure(name, rate)
            report[f"{name}_{rate}"] = found
            print(f"  {name} at {rate}/s: {found}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
