"""The Location service on Redis: several Location and Connect instances share it, and a
restarted Location forgets nothing.

The same semantics as MemoryLocation. Each AOR is one hash (``<prefix>loc:<aor>``: a
field per contact, the route as Routr's protobuf), read, then rewritten by a script that
writes only if the hash still holds what was read (else read again), expiring with its last
binding. Call-ID affinity is a key per Call-ID that expires after an hour. Nothing grows
for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sipgrid.api import convert
from sipgrid.api.types import Binding, Route
from sipgrid.services.metrics import REDIS_ERRORS

from .service import AFFINITY_TTL, contact_key

RETRIES = 20


class _CountedRetry(Retry):
    """Retry, and count each failure in sipgrid_redis_errors."""

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        def counted(*failure: Any) -> Any:
            REDIS_ERRORS.inc()
            return fail(*failure)

        return await super().call_with_retry(do, counted, *args, **kwargs)


def redis_client(url: str) -> aioredis.Redis:
    """A client that survives a restart of Redis: a command that finds its pooled
    connection dead is sent again on a new one (three tries, a short backoff), so the
    first request after Redis is back does not fail."""
    return aioredis.Redis.from_url(
        url,
        retry=_CountedRetry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=2,
        health_check_interval=30,
    )


# KEYS[1]: an AOR's hash. ARGV: n, then the n fields and values the writer read (n = 0:
# none, the hash missing), then the milliseconds until its last binding expires and the
# fields and values to write (nothing: none left). Writes only when the hash holds just
# what was read; 0 when another writer changed it meanwhile.
_WRITE_IF_UNCHANGED = """
local n = tonumber(ARGV[1])
local stored = redis.call('HGETALL', KEYS[1])
if #stored ~= 2 * n then return 0 end
local read = {}
for i = 2, 2 * n, 2 do read[ARGV[i]] = ARGV[i + 1] end
for i = 1, #stored, 2 do
  if read[stored[i]] ~= stored[i + 1] then return 0 end
end
redis.call('DEL', KEYS[1])
local first = 2 * n + 2
if #ARGV > first then
  for i = first + 1, #ARGV, 200 do
    redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 199, #ARGV)))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[first])
end
return 1
"""


class _Turn:
    """The writers of one AOR in this instance, one at a time."""

    __slots__ = ("lock", "writers")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.writers = 0


class RedisLocation:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sipgrid:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._turns: dict[str, _Turn] = {}  # AOR keys being written here, and by how many
        self._write_if_unchanged = client.register_script(_WRITE_IF_UNCHANGED)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLocation:
        return cls(redis_client(url), **kwargs)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, aor: str) -> str:
        return f"{self._prefix}loc:{aor}"

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        await self._add(aor, route, max_contacts)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        """What find_routes would answer right after the add, without asking Redis again:
        the add has just read the AOR's live routes and written them back with this one
        (a REGISTER's binding: two round trips, where it made four until session 24)."""
        routes = await self._add(aor, route, max_contacts)
        now = self._clock()
        return [r for r in routes if r.expires_at() > now]

    async def _add(self, aor: str, route: Route, max_contacts: int) -> list[Route]:
        """Add, refresh or (expires 0) remove one contact; the AOR's routes as written,
        newest first.

        The write is optimistic: a script writes only if the hash still holds what was
        read (one round trip less than WATCH, read, MULTI ... EXEC, and no connection
        held in between); when another writer changed the AOR meanwhile, it reads again.
        Writers of one AOR in this instance take turns instead: racing each other, they
        made each other read again until the tries ran out, and the REGISTER failed (up
        to 451 of 3000 digest exchanges on one AOR at 300 a second through the
        distributed wiring, bench/README.md). Only other instances' writes can still make
        a write read again.
        """
        if route.expires > 0 and not route.registered_on:
            route.registered_on = self._clock()
        key = self._key(aor)
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.writers += 1
        try:
            async with turn.lock:
                return await self._write(key, aor, route, max_contacts)
        finally:
            turn.writers -= 1
            if not turn.writers:
                del self._turns[key]

    async def _write(self, key: str, aor: str, route: Route, max_contacts: int) -> list[Route]:
        for _ in range(RETRIES):
            stored = await self._redis.hgetall(key)
            routes = [r for r in self._live(stored) if contact_key(r) != contact_key(route)]
            if route.expires > 0:
                # newest first even within one tick of the clock: a Redis hash
                # keeps no order, so ties would come back in any order
                newest = max((r.registered_on for r in routes), default=0.0)
                if route.registered_on <= newest:
                    route.registered_on = newest + 0.001  # stored in ms
                routes.insert(0, route)
                if max_contacts > 0:
                    del routes[max_contacts:]
            read: list[bytes | str | int] = [len(stored)]
            for field_, value in stored.items():
                read += (field_, value)
            written: list[bytes | str | int] = []
            if routes:
                last = max(r.expires_at() for r in routes) - self._clock()
                written.append(max(1, int(last * 1000)))
                for r in routes:
                    written += (contact_key(r), convert.route_to_bytes(r))
            if await self._write_if_unchanged(keys=[key], args=[*read, *written]):
                return routes
            # another instance wrote this AOR meanwhile: read again
        raise RuntimeError(f"location: too much contention on {aor}")

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        if not call_id:
            stored, pinned = await self._redis.hgetall(self._key(aor)), None
        else:  # the routes and the call's pinned contact in one round trip
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._key(aor))
                pipe.get(f"{self._prefix}aff:{call_id}")
                stored, pinned = await pipe.execute()
        routes = self._live(stored)
        if pinned is not None:
            hit = [r for r in routes if contact_key(r) == _bytes(pinned).decode()]
            if hit:
                return hit[:1]
        if labels:
            routes = [r for r in routes if all(r.labels.get(k) == v for k, v in labels.items())]
        if call_id and routes:
            await self._redis.set(
                f"{self._prefix}aff:{call_id}", contact_key(routes[0]), ex=int(AFFINITY_TTL)
            )
        return routes

    async def remove_routes(self, aor: str) -> None:
        await self._redis.delete(self._key(aor))

    async def list_bindings(self) -> list[Binding]:
        bindings: list[Binding] = []
        start = len(self._prefix) + len("loc:")
        async for key in self._redis.scan_iter(match=f"{self._prefix}loc:*", count=500):
            aor = _bytes(key).decode()[start:]
            bindings += [Binding(aor, r) for r in self._live(await self._redis.hgetall(key))]
        return bindings

    def _live(self, stored: Mapping[Any, Any]) -> list[Route]:
        now = self._clock()
        routes = [convert.route_from_bytes(_bytes(value)) for value in stored.values()]
        live = [r for r in routes if r.expires_at() > now]
        live.sort(key=lambda r: r.registered_on, reverse=True)
        return live


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
