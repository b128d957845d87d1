"""The Connect processor's resources read from the APIServer's internal port (the
distributed wiring): a snapshot, reloaded in a thread when the store's revision moved
(asked twice a second; an APIServer without sipgrid's Store service, Routr's say, is
read whole every five seconds instead)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import json_format

from sipgrid.pb import store_pb2, store_pb2_grpc
from sipgrid.sdk import ConnectClient, Resource, SdkError
from sipgrid.services.grpc_options import token_metadata

from .index import Current, Resources
from .resources import keep_fresh, snapshot_from


def snapshot(client: ConnectClient) -> Resources:
    def items(resource: Resource) -> list[dict[str, Any]]:
        return [
            # every field, so that an absent one never reads as the protobuf's zero
            json_format.MessageToDict(
                m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
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


BLIND_RELOAD = 5.0  # seconds between whole reloads from an APIServer that has no revision


class ApiResources:
    """Callable returning the current snapshot; ``run()`` keeps it fresh. ``current``
    returns the same, compiled: what Connect is given."""

    def __init__(self, internal_addr: str) -> None:
        self._client = ConnectClient(internal_addr)
        self._client.metadata.extend(token_metadata())  # the internal port may want it
        self._store = store_pb2_grpc.StoreStub(self._client.channel)  # type: ignore[no-untyped-call]
        self.current = Current(Resources())
        self._revision: int | None = None
        self._loaded_at = 0.0
        self.reloads = 0  # whole snapshots read (for the tests)

    def __call__(self) -> Resources:
        return self.current.resources

    async def refresh(self) -> None:
        revision = await asyncio.to_thread(self._revision_now)
        if revision is not None and revision == self._revision:
            return
        if revision is None and time.monotonic() - self._loaded_at < BLIND_RELOAD:
            return
        self.current.resources = await asyncio.to_thread(snapshot, self._client)
        self._revision, self._loaded_at = revision, time.monotonic()
        self.reloads += 1

    def _revision_now(self) -> int | None:
        """The store's revision; None when the APIServer does not tell it."""
        try:
            answer = self._store.Revision(
                store_pb2.RevisionRequest(),
                timeout=self._client.timeout,
                metadata=self._client.metadata,
            )
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise SdkError(f"the store's revision: {error.code().name}") from None
        return int(answer.revision)

    async def run(self) -> None:
        await keep_fresh(self.refresh, (SdkError,), "the APIServer")
