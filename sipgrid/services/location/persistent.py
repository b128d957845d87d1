"""Location in memory with a store behind it: every lookup is answered from memory; what
changed is written to the store once a second (write-behind), and at stop. A restart
loads the bindings still in force, so phones need not register again.

Write-behind rather than write-through by default: a REGISTER costs no database write on
its path, and a crash loses at most the last second of registrations, which phones
repeat anyway. ``write_through`` (LOCATION_WRITE=through) writes before answering;
`make bench` measures both (bench/results/sip-load.json, "location_write").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from sipgrid.api.convert import route_from_bytes, route_to_bytes
from sipgrid.api.types import Binding, Route

from .service import MemoryLocation, contact_key

log: Final = logging.getLogger("sipgrid.location")

FLUSH_EVERY: Final = 1.0


class BindingStore(Protocol):
    def load(self, now: float) -> list[tuple[str, bytes]]: ...

    def save(self, bindings: dict[str, list[tuple[str, bytes, float]]]) -> None: ...


class PersistentLocation:
    def binding_count(self) -> int:
        return self._memory.binding_count()

    def __init__(
        self,
        store: BindingStore,
        clock: Callable[[], float] = time.time,
        flush_every: float = FLUSH_EVERY,
        write_through: bool = False,
    ) -> None:
        self._memory = MemoryLocation(clock)
        self._store = store
        self._clock = clock
        self._flush_every = flush_every
        self._dirty: set[str] = set()
        self.write_through = write_through

    async def load(self) -> int:
        """Read the bindings in force; return how many."""
        rows = await asyncio.to_thread(self._store.load, self._clock())
        by_aor: dict[str, list[Route]] = {}
        for aor, data in rows:
            by_aor.setdefault(aor, []).append(route_from_bytes(data))
        for aor, routes in by_aor.items():
            routes.sort(key=lambda r: r.registered_on, reverse=True)
            self._memory.restore(aor, routes)
        return len(rows)

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        await self._memory.add_route(aor, route, max_contacts)
        self._dirty.add(aor)
        if self.write_through:
            await self.flush()

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        await self.add_route(aor, route, max_contacts)
        return await self.find_routes(aor)

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        return await self._memory.find_routes(aor, call_id, labels)

    async def remove_routes(self, aor: str) -> None:
        await self._memory.remove_routes(aor)
        self._dirty.add(aor)
        if self.write_through:
            await self.flush()

    async def list_bindings(self) -> list[Binding]:
        return await self._memory.list_bindings()

    async def flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        changes = {
            aor: [
                (contact_key(r), route_to_bytes(r), r.expires_at())
                for r in self._memory.routes_of(aor)
            ]
            for aor in dirty
        }
        try:
            await asyncio.to_thread(self._store.save, changes)
        except Exception as error:  # the database is down: try again next time
            log.warning("cannot save %d bindings: %s", len(changes), error)
            self._dirty |= dirty

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self.flush()
