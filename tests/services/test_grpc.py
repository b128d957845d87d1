"""The gRPC servicers: health checks, a round trip through Processor and Location, bad input;
gRPC's settings in a sipgrid process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sipgrid.api import convert
from sipgrid.api.types import MessageRequest, NetInterface, Route, Transport
from sipgrid.cli import GRPC_EXPERIMENTS
from sipgrid.pb import location_pb2, location_pb2_grpc, processor_pb2, processor_pb2_grpc
from sipgrid.services.grpc_clients import GrpcLocation, GrpcProcessor
from sipgrid.services.grpc_servers import start_server_bound
from sipgrid.services.location.service import MemoryLocation
from sipgrid.sip import Response, parse

from .helpers import connect_processor, request_bytes


def test_health_processor_and_location_over_grpc() -> None:
    async def scenario() -> None:
        server, port = await start_server_bound(
            "127.0.0.1:0", processor=connect_processor(), location=MemoryLocation()
        )
        address = f"127.0.0.1:{port}"
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for service in (
                    "",
                    "fonoster.routr.processor.v2beta1.Processor",
                    "fonoster.routr.location.v2beta1.Location",
                ):
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING

                # bad input: INVALID_ARGUMENT naming the field
                stub = processor_pb2_grpc.ProcessorStub(channel)
                try:
                    await stub.ProcessMessage(processor_pb2.MessageRequest(ref="x"))
                except grpc.aio.AioRpcError as error:
                    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "message" in (
                        error.details() or ""
                    )
                else:
                    raise AssertionError("an empty message was accepted")
                location_stub = location_pb2_grpc.LocationStub(channel)
                try:
                    await location_stub.AddRoute(location_pb2.AddRouteRequest())
                except grpc.aio.AioRpcError as error:
                    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "aor" in (
                        error.details() or ""
                    )
                else:
                    raise AssertionError("an empty AOR was accepted")

            processor = GrpcProcessor(address)
            assert processor.handles_responses  # until it hears otherwise
            message = parse(request_bytes("OPTIONS", 5999, uri="sip:127.0.0.1"))
            reply = await processor.process_message(
                MessageRequest(
                    "c1",
                    "ep",
                    "OPTIONS",
                    NetInterface("127.0.0.1", 5999),
                    [NetInterface("127.0.0.1", port, Transport.UDP)],
                    message,
                )
            )
            assert isinstance(reply.message, Response) and reply.message.status == 200
            # Connect passes responses through: the EdgePort need not send them (a sipgrid
            # metadata entry; a Routr processor never says it, so it gets every response)
            assert not processor.handles_responses
            await processor.close()

            location = GrpcLocation(address)
            route = Route(
                user="1001",
                host="10.0.0.7",
                port=5062,
                transport=Transport.TCP,
                expires=60,
                contact_uri="sip:1001@10.0.0.7:5062",
                flow="tcp:10.0.0.7:40000",
                labels={"a": "b"},
            )
            await location.add_route("sip:1001@sip.local", route, 2)
            (found,) = await location.find_routes("sip:1001@sip.local", "call-1")
            assert (
                found.host,
                found.port,
                found.transport,
                found.contact_uri,
                found.flow,
                found.labels,
            ) == (
                "10.0.0.7",
                5062,
                Transport.TCP,
                "sip:1001@10.0.0.7:5062",
                "tcp:10.0.0.7:40000",
                {"a": "b"},
            )
            assert [b.aor for b in await location.list_bindings()] == ["sip:1001@sip.local"]
            await location.remove_routes("sip:1001@sip.local")
            assert await location.find_routes("sip:1001@sip.local") == []
            await location.close()
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_a_request_keeps_its_method_and_listening_points_through_protobuf() -> None:
    points = [NetInterface("127.0.0.1", 5060, t) for t in (Transport.UDP, Transport.TCP)]
    for method, expected in (("INVITE", processor_pb2.INVITE), ("FOO", processor_pb2.UNKNOWN)):
        message = parse(request_bytes(method, 5070))
        request = MessageRequest(
            ref="r",
            edge_port_ref="ep",
            method=method,
            sender=NetInterface("127.0.0.1", 5070, Transport.UDP),
            listening_points=points,
            message=message,
        )
        pb = convert.request_to_pb(request, typed=False)
        assert pb.method == expected
        back = convert.request_from_pb(pb)
        assert back.listening_points == points and back.method == method
    points.append(NetInterface("127.0.0.1", 5061, Transport.TLS))  # a transport started later
    assert len(convert.request_to_pb(request, typed=False).listening_points) == 3


# Runs `sipgrid --version` as the `sipgrid` command does, noting GRPC_EXPERIMENTS at the
# moment grpc is first imported (gRPC reads it then, and never again).
AT_IMPORT = """
import importlib.abc, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_EXPERIMENTS"))
        return None
sys.meta_path.insert(0, Watch())
from sipgrid import cli
sys.argv = ["sipgrid", "--version"]
try:
    cli.main()
except SystemExit:
    pass
print(repr(seen))
"""


def test_the_sipgrid_command_starts_grpc_on_its_older_io_layer_unless_told() -> None:
    def seen(value: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
        if value is not None:
            env["GRPC_EXPERIMENTS"] = value
        done = subprocess.run(
            [sys.executable, "-c", AT_IMPORT], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert seen(None) == repr([GRPC_EXPERIMENTS])
    assert GRPC_EXPERIMENTS == "-event_engine_client,-event_engine_listener"
    assert seen("") == repr([""])  # the operator's word, even empty
    assert seen("-event_engine_dns") == repr(["-event_engine_dns"])
