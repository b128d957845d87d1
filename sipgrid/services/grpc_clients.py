"""gRPC clients of the Processor and Location contracts, behind the domain interfaces."""

from __future__ import annotations

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
from sipgrid.pb import location_pb2, location_pb2_grpc, processor_pb2, processor_pb2_grpc
from sipgrid.services.grpc_options import internal_channel

TIMEOUT = 5.0


class GrpcProcessor:
    """A Processor (Dispatcher, Connect, middleware) in another process."""

    def __init__(self, addr: str, timeout: float = TIMEOUT) -> None:
        # it may change responses: they all go through it, until it says it passes
        # them through unchanged (sipgrid's Dispatcher without middlewares, Connect)
        self.handles_responses = True
        self.addr = addr
        self._channel = internal_channel(addr)
        self._stub = processor_pb2_grpc.ProcessorStub(self._channel)
        self._timeout = timeout

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        reply = await self.process_pb(convert.request_to_pb(request))
        return convert.response_from_pb(reply, request.message)

    async def process_pb(
        self, request: processor_pb2.MessageRequest
    ) -> processor_pb2.MessageResponse:
        """The call itself, protobuf in and out (the Dispatcher passes messages through)."""
        try:
            reply: processor_pb2.MessageResponse = await self._stub.ProcessMessage(
                request, timeout=self._timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as error:
            raise ProcessorUnavailable(
                f"{self.addr}: {error.code().name}: {error.details()}"
            ) from None
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
        await self._channel.close()


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
