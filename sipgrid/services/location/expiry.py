"""``<subject>.endpoint.expired`` on NATS when a binding runs out without being renewed.

A Location store drops an expired binding silently, and cannot tell afterwards whether a
binding went because it expired or because the phone unregistered. This wrapper knows:
it sees every AddRoute that passes through it, keeps when each binding it stored runs
out (a heap), and once a second announces the ones that ran out and were neither renewed,
unregistered, pushed out by maxContacts nor removed. Before it announces one, it asks the
store whether the contact is live again (renewed through another Location instance
sharing Redis). Bindings that were in the store when it started (kept across a restart)
are watched too. One that another instance removes is announced by the instance that
stored it: a known limit.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from sipgrid.api.types import Binding, LocationService, Route

from ..events import NatsEvents, iso_now
from .service import contact_key

log = logging.getLogger("sipgrid.location")

SWEEP_INTERVAL = 1.0


class ExpiryEvents:
    """A LocationService around another one that publishes ``endpoint.expired``."""

    def __init__(
        self,
        location: LocationService,
        events: NatsEvents,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.location = location
        self.events = events
        self._clock = clock
        self._due: list[tuple[float, str, str]] = []  # (expires at, aor, contact key)
        # aor -> contact key -> (expires at, contact URI), newest first
        self._known: dict[str, dict[str, tuple[float, str]]] = {}

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        await self.location.add_route(aor, route, max_contacts)
        self._saw(aor, route, max_contacts)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        routes = await self.location.add_route_and_find(aor, route, max_contacts)
        self._saw(aor, route, max_contacts)
        return routes

    def _saw(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        key = contact_key(route)
        known = {k: v for k, v in self._known.get(aor, {}).items() if k != key}
        if route.expires > 0:
            at = route.expires_at()
            known = {key: (at, route.contact_uri or key), **known}
            heapq.heappush(self._due, (at, aor, key))
            if max_contacts > 0:
                known = dict(list(known.items())[:max_contacts])  # the oldest were dropped
        if known:
            self._known[aor] = known
        else:
            self._known.pop(aor, None)

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        return await self.location.find_routes(aor, call_id, labels)

    async def remove_routes(self, aor: str) -> None:
        await self.location.remove_routes(aor)
        self._known.pop(aor, None)

    async def list_bindings(self) -> list[Binding]:
        return await self.location.list_bindings()

    async def watch_stored(self) -> int:
        """Watch what the store holds already (kept across a restart); how many."""
        bindings = await self.location.list_bindings()
        for binding in sorted(bindings, key=lambda b: b.route.registered_on):
            self._saw(binding.aor, binding.route)
        return len(bindings)

    async def sweep(self) -> list[tuple[str, str]]:
        """Announce the bindings that ran out; (aor, contact) of each."""
        now = self._clock()
        announced: list[tuple[str, str]] = []
        while self._due and self._due[0][0] <= now:
            at, aor, key = heapq.heappop(self._due)
            entry = self._known.get(aor, {}).get(key)
            if entry is None or entry[0] != at:
                continue  # renewed, unregistered, pushed out or removed meanwhile
            del self._known[aor][key]
            if not self._known[aor]:
                del self._known[aor]
            try:
                live = await self.location.find_routes(aor)
            except (OSError, RedisError):
                self._known.setdefault(aor, {})[key] = entry  # asked again next time
                heapq.heappush(self._due, (at, aor, key))
                raise
            if any(contact_key(r) == key for r in live):
                continue  # renewed through another instance
            contact = entry[1]
            self.events.publish(
                "endpoint.expired", {"aor": aor, "contact": contact, "expiredAt": iso_now()}
            )
            log.info("binding expired: %s %s", aor, contact, extra={"aor": aor})
            announced.append((aor, contact))
        return announced

    async def run(self) -> None:
        """Sweep once a second for ever; a store that fails is tried again."""
        while True:
            try:
                await self.sweep()
            except (OSError, RedisError) as error:  # a store down must not end the watch
                log.warning("cannot check expired bindings: %s", error)
            await asyncio.sleep(SWEEP_INTERVAL)
