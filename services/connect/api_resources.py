"""The Connect processor's resources read from the APIServer's internal port (the
distributed wiring): a snapshot reloaded every half second, in a thread."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import json_format

from services.grpc_options import token_metadata
from sipgrid.sdk import ConnectClient, Resource, SdkError

from .resources import Resources, keep_fresh, snapshot_from


def snapshot(client: ConnectClient) -> Resources:
    def items(resource: Resource) -> list[dict[str, Any]]:
        return [
            json_format.MessageToDict(m, preserving_proto_field_name=True)
            for m in resource.list(1000)
        ]

    return snapshot_from(
        {
            "AccessControlList": items(client.acls),
            "Credentials": items(client.credentials),
            "Trunk": items(client.trunks),
            "Number": items(client.numbers),
            "Domain": items(client.domains),
            "Agent": items(client.agents),
            "Peer": items(client.peers),
        }
    )


class ApiResources:
    """Callable returning the current snapshot; ``run()`` keeps it fresh."""

    def __init__(self, internal_addr: str) -> None:
        self._client = ConnectClient(internal_addr)
        self._client.metadata.extend(token_metadata())  # the internal port may want it
        self._snapshot = Resources()

    def __call__(self) -> Resources:
        return self._snapshot

    async def refresh(self) -> None:
        self._snapshot = await asyncio.to_thread(snapshot, self._client)

    async def run(self) -> None:
        await keep_fresh(self.refresh, (SdkError,), "the APIServer")
