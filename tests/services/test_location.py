"""Location's semantics, the same on both stores: memory (one instance) and Redis
(shared by several instances and surviving their restarts)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine

from sipgrid.api import convert
from sipgrid.api.types import LocationService, Route, Transport
from sipgrid.services import eager
from sipgrid.services.apiserver.bindings import DatabaseBindings
from sipgrid.services.apiserver.database import make_engine, migrate
from sipgrid.services.connect.auth import RedisNonceCounts
from sipgrid.services.location.persistent import PersistentLocation
from sipgrid.services.location.redis_store import TIMES_TAG, RedisLocation, redis_client
from sipgrid.services.location.service import MemoryLocation, contact_key

Store = Callable[["Clock"], LocationService]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return lambda clock: MemoryLocation(clock)
    url = request.getfixturevalue("redis_url")
    return lambda clock: RedisLocation.from_url(url, clock=clock)


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


def test_newest_first_expiry_max_contacts_and_removal(store: Store) -> None:
    async def scenario() -> None:
        clock = Clock()
        location = store(clock)
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


def test_call_id_affinity_and_labels(store: Store) -> None:
    async def scenario() -> None:
        clock = Clock()
        location = store(clock)
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


def test_add_route_and_find_answers_what_find_routes_would(store: Store) -> None:
    """The registrar's last binding of a REGISTER: the add, then the AOR's routes for its
    200, as a find_routes right after would give them (newest first, the expired and
    the removed left out, at most max_contacts)."""

    async def scenario() -> None:
        clock = Clock()
        location = store(clock)
        aor = "sip:1003@sip.local"

        def ports(routes: list[Route]) -> list[tuple[int, int]]:
            return [(r.port, r.expires) for r in routes]

        steps: list[tuple[Route, int]] = [
            (route(8001), 0),
            (route(8002, expires=10), 0),
            (route(8003), 0),
            (route(8001, expires=120), 0),  # a refresh: newest now, not twice
            (route(8002, expires=0), 0),  # removed
            (route(8004), 2),  # the oldest beyond two dropped
        ]
        for added, max_contacts in steps:
            clock.now += 1
            found = await location.add_route_and_find(aor, added, max_contacts)
            assert ports(found) == ports(await location.find_routes(aor))
        assert ports(found) == [(8004, 60), (8001, 120)]
        clock.now += 200  # all expired: removing one more then finds nothing
        assert await location.add_route_and_find(aor, route(8005, expires=0)) == []

    asyncio.run(scenario())


class _Counted(aioredis.Connection):
    """A connection to the real Redis that counts what it sends: one write per command,
    or per pipeline that is executed, each waiting for its answer (a round trip)."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _Counted.sent += 1
        await super().send_packed_command(command, check_health)


def test_add_route_and_find_on_redis_asks_nothing_more_than_the_add(redis_url: str) -> None:
    """The add's script changes the AOR's routes in Redis and answers them as it left
    them, with no read of its own before or after (a REGISTER's binding: one round trip
    to Redis)."""

    async def scenario() -> None:
        pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=_Counted)
        location = RedisLocation(aioredis.Redis(connection_pool=pool), clock=Clock())
        # the connection's own handshake, and the script loaded: not counted
        await location.add_route("sip:warm@sip.local", route(8100))
        aor = "sip:1004@sip.local"

        async def round_trips(call: Awaitable[object]) -> int:
            before = _Counted.sent
            await call
            return _Counted.sent - before

        adding = await round_trips(location.add_route(aor, route(8101)))
        finding = await round_trips(location.find_routes(aor))
        both = await round_trips(location.add_route_and_find(aor, route(8102)))
        assert (adding, finding) == (1, 1)  # the script; HGETALL
        assert both == adding
        # a call's: the routes, the Call-ID's pin read and (the first time) written
        assert await round_trips(location.find_routes(aor, call_id="call-p")) == 1
        assert await round_trips(location.find_routes(aor, call_id="call-p")) == 1
        await location.close()

    asyncio.run(scenario())


def test_many_writers_of_one_aor_at_once_on_redis(redis_url: str) -> None:
    """Fifty bindings of one AOR written at once through one instance, and ten more
    through each of two others: every one is kept, and each write is one round trip
    (Redis runs one script at a time, so none reads again or waits for another here)."""

    async def scenario() -> None:
        pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=_Counted)
        one = RedisLocation(aioredis.Redis(connection_pool=pool))
        # as many connections as writers, each with its handshake done: not counted
        await asyncio.gather(
            *(one.add_route("sip:warm@sip.local", route(8100 + i)) for i in range(50))
        )
        aor = "sip:1005@sip.local"
        before = _Counted.sent
        await asyncio.gather(*(one.add_route(aor, route(9000 + i)) for i in range(50)))
        assert _Counted.sent - before == 50
        others = [RedisLocation.from_url(redis_url) for _ in range(2)]
        await asyncio.gather(
            *(
                other.add_route(aor, route(9100 + 10 * n + i))
                for n, other in enumerate(others)
                for i in range(10)
            )
        )
        assert len(await one.find_routes(aor)) == 70
        for location in (one, *others):
            await location.close()

    asyncio.run(scenario())


def test_commands_beyond_the_pool_wait_for_a_connection(redis_url: str) -> None:
    """Thirty bindings and thirty finds at once through a client of two connections: each
    waits for a connection to come back, where redis-py's own pool fails all but two
    ("Too many connections"), as it did past its 100 connections under bursts of
    REGISTERs."""

    async def scenario() -> None:
        location = RedisLocation(redis_client(f"{redis_url}?max_connections=2"))
        aors = [f"sip:pool{i}@sip.local" for i in range(30)]
        await asyncio.gather(*(location.add_route(aor, route(8200)) for aor in aors))
        found = await asyncio.gather(*(location.find_routes(aor, "c") for aor in aors))
        assert [[r.port for r in routes] for routes in found] == [[8200]] * 30
        assert location.client.connection_pool.max_connections == 2
        await location.close()

    asyncio.run(scenario())


def test_jobs_started_outside_a_task_use_redis_as_tasks_do(redis_url: str) -> None:
    """Connect's jobs run their first step outside any task (sipgrid/services/eager.py),
    and a job's first Redis command comes in that step: it must not open a timeout scope
    before its first wait (that needs a task). Five jobs started so at once on a client of
    one connection: each waits for the connection and gets its answer."""

    async def scenario() -> None:
        client = redis_client(f"{redis_url}?max_connections=1")
        location = RedisLocation(client)
        await location.add_route("sip:eager@sip.local", route(8300))
        loop = asyncio.get_running_loop()
        started: asyncio.Future[list[asyncio.Task[list[Route]] | None]] = loop.create_future()

        def from_the_loop() -> None:  # a callback of the loop: no task is running
            try:
                assert asyncio.current_task() is None
                jobs = [location.find_routes("sip:eager@sip.local", f"c{i}") for i in range(5)]
                started.set_result([eager.start(job) for job in jobs])
            except Exception as error:  # raised in a first step: the test's to report
                started.set_exception(error)

        loop.call_soon(from_the_loop)
        tasks = await started
        assert all(task is not None for task in tasks)  # each waited: it went on as a task
        found = [await task for task in tasks if task is not None]
        assert [[r.port for r in routes] for routes in found] == [[8300]] * 5
        await location.close()

    asyncio.run(scenario())


class _Interrupted(aioredis.Redis):
    """A client to the real Redis that runs ``meanwhile`` (once) between reading an AOR
    and writing it: another instance's write, landing at the worst moment."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def hgetall(self, name: Any) -> Any:
        found = await super().hgetall(name)
        if self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            await hook()
        return found


def test_routes_stored_by_an_older_sipgrid_are_kept_and_stay_readable(redis_url: str) -> None:
    """An AOR whose routes an older sipgrid stored (Routr's protobuf alone, before session
    27): the add stores them again with their times, keeps every one, and what it stores
    an older instance still reads (its protobuf reader skips the times). Another instance
    writes the AOR between this one's read and write: that write is refused, and the add
    tries again."""

    async def scenario() -> None:
        pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=_Counted)
        client = _Interrupted(connection_pool=pool)
        clock = Clock()
        one, other = (
            RedisLocation(client, clock=clock),
            RedisLocation.from_url(redis_url, clock=clock),
        )
        await one.add_route("sip:warm@sip.local", route(8100))
        aor = "sip:1006@sip.local"
        key = f"sipgrid:loc:{aor}"
        older = route(9201)
        older.registered_on = clock.now
        await client.hset(key, contact_key(older), convert.route_to_bytes(older))
        await client.pexpire(key, 60_000)
        assert [r.port for r in await one.find_routes(aor)] == [9201]
        assert [r.port for r in await one.find_routes(aor, call_id="call-o")] == [9201]

        async def meanwhile() -> None:
            clock.now += 1
            await other.add_route(aor, route(9202))

        client.meanwhile = meanwhile
        before = _Counted.sent
        clock.now += 2
        found = await one.add_route_and_find(aor, route(9203))
        # the script (routes without times), the read, the refused write, the script
        assert _Counted.sent - before == 4
        assert [r.port for r in found] == [9203, 9202, 9201]
        stored = await client.hgetall(key)
        assert all(value.startswith(TIMES_TAG) for value in stored.values())
        read_as_before = [convert.route_from_bytes(value) for value in stored.values()]
        assert sorted(r.port for r in read_as_before) == [9201, 9202, 9203]
        # 9203 registered at 1002, after 9202's read: the script makes it newest (by a
        # millisecond, in its times; what an older reader sees is its writer's time)
        assert [r.registered_on for r in found] == [1003.001, 1003.0, 1000.0]
        # the call pinned while the routes had no times keeps its route
        assert [r.port for r in await other.find_routes(aor, call_id="call-o")] == [9201]
        assert [r.port for r in await other.find_routes(aor, call_id="call-n")] == [
            9203,
            9202,
            9201,
        ]
        assert [r.port for r in await one.find_routes(aor, call_id="call-n")] == [9203]
        await one.close()
        await other.close()

    asyncio.run(scenario())


def test_two_instances_on_one_redis_give_the_same_answers(redis_url: str) -> None:
    """What one Location instance (or a restarted one) stores, another finds: bindings,
    affinity, expiry; and a nonce-count used on one Connect is a replay on another."""

    async def scenario() -> None:
        clock = Clock()
        one = RedisLocation.from_url(redis_url, clock=clock)
        two = RedisLocation.from_url(redis_url, clock=clock)
        aor = "sip:1002@sip.local"
        await one.add_route(aor, route(7001))
        clock.now += 1
        assert (await two.find_routes(aor, call_id="call-x"))[0].port == 7001
        await two.add_route(aor, route(7002))
        assert [r.port for r in await one.find_routes(aor)] == [7002, 7001]
        assert (await one.find_routes(aor, call_id="call-x"))[0].port == 7001  # affinity
        assert [b.route.port for b in await two.list_bindings()] == [7002, 7001]
        await one.close()
        again = RedisLocation.from_url(redis_url, clock=clock)  # a restarted instance
        assert [r.port for r in await again.find_routes(aor)] == [7002, 7001]
        clock.now += 61
        assert await again.find_routes(aor) == []
        nonce = secrets.token_hex(8)
        first = RedisNonceCounts(aioredis.Redis.from_url(redis_url))
        second = RedisNonceCounts(aioredis.Redis.from_url(redis_url))
        assert await first.fresh(nonce, 1)
        assert not await second.fresh(nonce, 1)  # replayed on another Connect
        assert await second.fresh(nonce, 2) and not await first.fresh(nonce, 2)

    asyncio.run(scenario())


def test_redis_keys_expire_with_their_bindings(redis_url: str) -> None:
    async def scenario() -> None:
        location = RedisLocation.from_url(redis_url)
        await location.add_route("sip:1001@sip.local", route(7003, expires=60))
        ttl = await location.client.ttl("sipgrid:loc:sip:1001@sip.local")
        assert 0 < ttl <= 60

    asyncio.run(scenario())


@pytest.mark.parametrize("write_through", [False, True])
def test_bindings_written_behind_or_through_to_the_database(
    tmp_path: Path, write_through: bool
) -> None:
    """Through: in the database before the REGISTER is answered. Behind: at the next
    flush (once a second). Either way a new instance on the database loads them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'sipgrid.db'}")
    migrate(engine)
    clock = Clock()

    async def scenario() -> None:
        first = PersistentLocation(DatabaseBindings(engine), clock, write_through=write_through)
        await first.add_route("sip:1001@sip.local", route(7001))
        early = PersistentLocation(DatabaseBindings(engine), clock)
        assert await early.load() == (1 if write_through else 0)
        await first.flush()
        later = PersistentLocation(DatabaseBindings(engine), clock)
        assert await later.load() == 1
        assert [r.port for r in await later.find_routes("sip:1001@sip.local")] == [7001]

    asyncio.run(scenario())


def test_a_save_of_many_aors_replaces_each_of_them(database: Engine) -> None:
    """More AORs than one DELETE names (SAVE_CHUNK): every one replaced, none left twice,
    and an AOR saved with no routes is gone."""
    store = DatabaseBindings(database)
    aors = [f"sip:{n}@sip.local" for n in range(1200)]
    store.save({aor: [("udp:127.0.0.1:7001", b"first", 2000.0)] for aor in aors})
    changed = {aor: [("udp:127.0.0.1:7002", b"second", 2000.0)] for aor in aors[::2]}
    changed[aors[1]] = []  # its bindings removed
    store.save(changed)
    rows = dict(store.load(now=1000.0))
    assert len(rows) == 1199
    assert {rows[aor] for aor in aors[::2]} == {b"second"}
    assert {rows[aor] for aor in aors[3::2]} == {b"first"}
    assert aors[1] not in rows
