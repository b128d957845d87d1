from __future__ import annotations

import asyncio

from services.location.service import MemoryLocation
from sipgrid.api.types import Route, Transport


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def route(port: int, expires: int = 60, **labels: str) -> Route:
    return Route(
        user="1001",
        host="127.0.0.1",
        port=port,
        transport=Transport.UDP,
        advertised_host="127.0.0.1",
        advertised_port=port,
        expires=expires,
        contact_uri=f"sip:1001@127.0.0.1:{port}",
        labels=labels,
    )


def test_newest_first_expiry_max_contacts_and_removal() -> None:
    async def scenario() -> None:
        clock = Clock()
        location = MemoryLocation(clock)
        aor = "sip:1001@sip.local"
        await location.add_route(aor, route(5001))
        clock.now += 1
        await location.add_route(aor, route(5002, expires=10))
        assert [r.port for r in await location.find_routes(aor)] == [5002, 5001]
        clock.now += 11  # 5002 expired
        assert [r.port for r in await location.find_routes(aor)] == [5001]
        await location.add_route(aor, route(5003), max_contacts=2)
        await location.add_route(aor, route(5004), max_contacts=2)
        assert [r.port for r in await location.find_routes(aor)] == [5004, 5003]  # oldest dropped
        await location.add_route(aor, route(5004))  # a refresh replaces, not duplicates
        assert [r.port for r in await location.find_routes(aor)] == [5004, 5003]
        await location.add_route(aor, route(5003, expires=0))  # expires 0 removes that contact
        assert [r.port for r in await location.find_routes(aor)] == [5004]
        assert [(b.aor, b.route.port) for b in await location.list_bindings()] == [(aor, 5004)]
        await location.remove_routes(aor)
        assert await location.find_routes(aor) == []

    asyncio.run(scenario())


def test_call_id_affinity_and_labels() -> None:
    async def scenario() -> None:
        clock = Clock()
        location = MemoryLocation(clock)
        aor = "sip:1002@sip.local"
        await location.add_route(aor, route(6001, priority="low"))
        clock.now += 1
        first = await location.find_routes(aor, call_id="call-a")
        assert first[0].port == 6001
        await location.add_route(aor, route(6002, priority="high"))
        # a new route is newest, but call-a keeps its route
        assert (await location.find_routes(aor, call_id="call-a"))[0].port == 6001
        assert (await location.find_routes(aor, call_id="call-b"))[0].port == 6002
        assert [r.port for r in await location.find_routes(aor, labels={"priority": "low"})] == [
            6001
        ]

    asyncio.run(scenario())
