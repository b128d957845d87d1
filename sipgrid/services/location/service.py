"""The Location service with an in-memory store (one instance; redis_store.py for several).

Routr's semantics: bindings per AOR, newest first; expired bindings are never returned
and are dropped on the next touch; ``max_contacts`` drops the oldest beyond the limit;
AddRoute with expires 0 removes the binding of that contact; every request of a
Call-ID gets the same route (session affinity); labels select routes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from sipgrid.api.types import Binding, Route

AFFINITY_TTL: Final = 3600.0
AFFINITY_MAX: Final = 100_000


def contact_key(route: Route) -> str:
    """What makes two routes of an AOR the same binding: the Contact URI, else where
    the Contact pointed."""
    if route.contact_uri:
        return route.contact_uri
    # _value_: Enum's value is a property written in Python
    return f"{route.transport._value_}:{route.advertised_host}:{route.advertised_port}"


class MemoryLocation:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._routes: dict[str, list[Route]] = {}
        # call_id -> (route, when chosen); a bounded LRU
        self._affinity: OrderedDict[str, tuple[Route, float]] = OrderedDict()

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        routes = [r for r in self._live(aor) if contact_key(r) != contact_key(route)]
        if route.expires > 0:
            if not route.registered_on:
                route.registered_on = self._clock()
            routes.insert(0, route)
            if max_contacts > 0:
                del routes[max_contacts:]
        if routes:
            self._routes[aor] = routes
        else:
            self._routes.pop(aor, None)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        await self.add_route(aor, route, max_contacts)
        return await self.find_routes(aor)

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        now = self._clock()
        if call_id:
            hit = self._affinity.get(call_id)
            if hit is not None and hit[0].expires_at() > now:
                self._affinity.move_to_end(call_id)
                return [hit[0]]
        routes = self._live(aor)
        if labels:
            routes = [r for r in routes if all(r.labels.get(k) == v for k, v in labels.items())]
        if call_id and routes:
            self._affinity[call_id] = (routes[0], now)
            while len(self._affinity) > AFFINITY_MAX:
                self._affinity.popitem(last=False)
        return routes

    async def remove_routes(self, aor: str) -> None:
        self._routes.pop(aor, None)

    def routes_of(self, aor: str) -> list[Route]:
        """The live routes of an AOR, newest first (for a store kept behind this one)."""
        return list(self._live(aor))

    def restore(self, aor: str, routes: list[Route]) -> None:
        """Put back routes read from a store at start (newest first)."""
        if routes:
            self._routes[aor] = routes

    async def list_bindings(self) -> list[Binding]:
        return [Binding(aor, r) for aor in list(self._routes) for r in self._live(aor)]

    def binding_count(self) -> int:
        """Bindings not expired (for the sipgrid_bindings gauge)."""
        now = self._clock()
        return sum(r.expires_at() > now for routes in self._routes.values() for r in routes)

    def _live(self, aor: str) -> list[Route]:
        routes = self._routes.get(aor)
        if not routes:
            return []
        now = self._clock()
        live = [r for r in routes if r.expires_at() > now]
        if len(live) != len(routes):
            if live:
                self._routes[aor] = live
            else:
                del self._routes[aor]
        return live
