"""endpoint.expired: a binding that runs out is announced once, and only then (not when
renewed, unregistered, pushed out by maxContacts, removed, or renewed elsewhere)."""

from __future__ import annotations

import asyncio

from sipgrid.services.events import NatsEvents
from sipgrid.services.location.expiry import ExpiryEvents
from sipgrid.services.location.redis_store import RedisLocation

from .test_location import Clock, Store, route
from .test_location import store as store  # the memory and Redis stores, as a fixture

AOR = "sip:1001@sip.local"


def watch(location: object, clock: Clock) -> ExpiryEvents:
    # a publisher with no NATS behind it: what it would send is counted as dropped
    events = NatsEvents("nats://127.0.0.1:9")
    return ExpiryEvents(location, events, clock)  # type: ignore[arg-type]


def test_a_binding_that_runs_out_is_announced_once(store: Store) -> None:
    async def scenario() -> None:
        clock = Clock()
        expiry = watch(store(clock), clock)
        await expiry.add_route(AOR, route(5001, expires=60))
        clock.now += 59
        assert await expiry.sweep() == []
        clock.now += 2
        assert await expiry.sweep() == [(AOR, "sip:1001@127.0.0.1:5001")]
        assert expiry.events.dropped == 1  # published (no NATS here: counted as dropped)
        clock.now += 60
        assert await expiry.sweep() == []

    asyncio.run(scenario())


def test_renewed_unregistered_pushed_out_or_removed_is_not_expired(store: Store) -> None:
    async def scenario() -> None:
        clock = Clock()
        expiry = watch(store(clock), clock)
        await expiry.add_route(AOR, route(5001, expires=60))  # renewed at +30
        await expiry.add_route(AOR, route(5002, expires=60))  # unregistered at +10
        await expiry.add_route("sip:1002@sip.local", route(5003, expires=60))  # removed
        clock.now += 10
        await expiry.add_route(AOR, route(5002, expires=0))
        await expiry.remove_routes("sip:1002@sip.local")
        clock.now += 20
        await expiry.add_route(AOR, route(5001, expires=60))
        clock.now += 31  # the first registrations have run out
        assert await expiry.sweep() == []
        clock.now += 30  # the renewal has
        assert await expiry.sweep() == [(AOR, "sip:1001@127.0.0.1:5001")]
        # maxContacts 1: the second contact pushes the first out
        await expiry.add_route(AOR, route(5004, expires=60), max_contacts=1)
        clock.now += 1
        await expiry.add_route(AOR, route(5005, expires=60), max_contacts=1)
        clock.now += 61
        assert await expiry.sweep() == [(AOR, "sip:1001@127.0.0.1:5005")]

    asyncio.run(scenario())


def test_bindings_stored_before_the_watch_began_are_watched(store: Store) -> None:
    async def scenario() -> None:
        clock = Clock()
        location = store(clock)
        await location.add_route(AOR, route(5001, expires=60))  # before a restart, say
        expiry = watch(location, clock)
        assert await expiry.watch_stored() == 1
        clock.now += 61
        assert await expiry.sweep() == [(AOR, "sip:1001@127.0.0.1:5001")]

    asyncio.run(scenario())


def test_renewed_through_another_location_instance_is_not_expired(redis_url: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        first = watch(RedisLocation.from_url(redis_url, clock=clock), clock)
        second = watch(RedisLocation.from_url(redis_url, clock=clock), clock)
        await first.add_route(AOR, route(5001, expires=60))
        clock.now += 30
        await second.add_route(AOR, route(5001, expires=60))  # the renewal went elsewhere
        clock.now += 31
        assert await first.sweep() == []
        clock.now += 30
        assert await second.sweep() == [(AOR, "sip:1001@127.0.0.1:5001")]

    asyncio.run(scenario())
