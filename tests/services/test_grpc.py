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
from sipgrid.api.types import Fork, MessageRequest, MessageResponse, NetInterface, Route, Transport
from sipgrid.cli import GRPC_EXPERIMENTS
from sipgrid.pb import (
    location_pb2,
    location_pb2_grpc,
    processor_pb2,
    processor_pb2_grpc,
    stream_pb2,
)
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


def test_every_field_comes_back_through_the_messages_built_in_place() -> None:
    """request_into_pb, response_into_pb and route_into_pb fill a message field by field
    (the stream's own, not a copy): nothing is left out, on a call's way there and back."""
    lp = NetInterface("10.0.0.1", 5060, Transport.UDP)
    request = MessageRequest(
        ref="r",
        edge_port_ref="ep",
        method="INVITE",
        sender=NetInterface("10.0.0.9", 5070, Transport.TCP),
        listening_points=[lp],
        message=parse(request_bytes("INVITE", 5070)),
        external_addrs=["203.0.113.1"],
        localnets=["10.0.0.0/8"],
        metadata={"x-room": "7"},
    )
    item = stream_pb2.StreamRequest(id=3)
    convert.request_into_pb(request, item.request, typed=False)
    assert item.request == convert.request_to_pb(request, typed=False)
    back = convert.request_from_pb(
        stream_pb2.StreamRequest.FromString(item.SerializeToString()).request
    )
    assert (back.ref, back.edge_port_ref, back.method, back.sender) == (
        "r",
        "ep",
        "INVITE",
        request.sender,
    )
    assert (back.listening_points, back.external_addrs, back.localnets, back.metadata) == (
        [lp],
        ["203.0.113.1"],
        ["10.0.0.0/8"],
        {"x-room": "7"},
    )
    assert back.message.serialize() == request.message.serialize()

    answer = MessageResponse(
        request.message,
        {"x-keep": "1"},
        destination=NetInterface("10.0.0.2", 5062, Transport.UDP),
        target_flow=NetInterface("10.0.0.3", 40000, Transport.TCP),
        alternatives=["sip:a@10.0.0.4"],
        credentials=("1001", "secret"),
        forks=[Fork("sip:b@10.0.0.5", None, None, ("<sip:10.0.0.1;lr>",))],
        follow_dialog=True,
    )
    out = stream_pb2.StreamResponse(id=3)
    convert.response_into_pb(answer, out.response, typed=False)
    assert out.response == convert.response_to_pb(answer, typed=False)
    again = convert.response_from_pb(out.response, request.message)
    assert (again.metadata, again.destination, again.target_flow) == (
        {"x-keep": "1"},
        answer.destination,
        answer.target_flow,
    )
    assert (again.alternatives, again.credentials, again.forks, again.follow_dialog) == (
        answer.alternatives,
        answer.credentials,
        answer.forks,
        True,
    )
    assert not again.drop

    route = Route(
        "1001",
        "10.0.0.7",
        5062,
        Transport.TCP,
        "203.0.113.7",
        5080,
        1700000000.5,
        600,
        2,
        "ep",
        [lp],
        ["10.0.0.0/8"],
        ["203.0.113.1"],
        {"a": "b"},
        "sip:1001@10.0.0.7:5062",
        "tcp:10.0.0.7:40000",
    )
    found = location_pb2.FindRoutesResponse()
    convert.routes_into_pb([route, route], found)
    assert [convert.route_from_pb(r) for r in found.routes] == [route, route]
    plain = Route("1002", "10.0.0.8", 5060)  # no labels, lists or flow: none written
    assert (
        convert.route_to_pb(plain).ByteSize()
        == location_pb2.Route(
            user="1002", host="10.0.0.8", port="5060", advertised_port="0", expires=3600
        ).ByteSize()
    )


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
