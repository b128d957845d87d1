"""The Registry's status over gRPC (sipgrid.registry.v1.Registry/ListTrunkStatus), read
by `sipgrid trunks status`."""

from __future__ import annotations

from typing import Any

import grpc

from sipgrid.pb import registry_pb2, registry_pb2_grpc

from .registry import Registry

SERVICE = "sipgrid.registry.v1.Registry"


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def ListTrunkStatus(
        self,
        request: registry_pb2.ListTrunkStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> registry_pb2.ListTrunkStatusResponse:
        now, statuses = self._registry.snapshot()
        return registry_pb2.ListTrunkStatusResponse(
            trunks=[
                registry_pb2.TrunkStatus(
                    ref=s.ref,
                    state=s.state,
                    registrar=s.registrar,
                    last_status=s.last_status or 0,
                    last_reason=s.last_reason,
                    expires_in=round(s.expires_at - now) if s.expires_at else -1,
                    next_attempt_in=max(0, round(s.next_attempt - now)),
                    failures=s.failures,
                )
                for s in statuses
            ]
        )
