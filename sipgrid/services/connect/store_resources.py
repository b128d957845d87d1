"""The Connect processor's view of the resources, read from the APIServer's store.

A snapshot (services.connect.resources.Resources) answers every SIP message without a
database round trip; a refresher reloads it when the store's write counter moves,
checked twice a second, so an API change reaches new calls within a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sipgrid.services.apiserver.store import KINDS, ResourceStore, StoreError

from .index import Current, Resources
from .resources import keep_fresh, snapshot_from


def snapshot(store: ResourceStore) -> Resources:
    items = {kind: _all(store, kind) for kind in KINDS}
    for item in items["Credentials"]:
        item["password"] = store.password(item["ref"])
    return snapshot_from(items)


def _all(store: ResourceStore, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page, token = store.list_page(kind, 1000, token)
        items += page
        if not token:
            return items


class StoreResources:
    """Callable that returns the current snapshot; ``run()`` keeps it fresh. ``current``
    returns the same, compiled: what Connect is given."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store
        self._revision = store.revision()
        self.current = Current(snapshot(store))

    def __call__(self) -> Resources:
        return self.current.resources

    async def refresh(self) -> bool:
        """Reload when the store changed; True when it did."""
        revision = await asyncio.to_thread(self._store.revision)
        if revision == self._revision:
            return False
        self.current.resources = await asyncio.to_thread(snapshot, self._store)
        self._revision = revision
        return True

    async def run(self) -> None:
        await keep_fresh(self.refresh, (StoreError,), "the store")
