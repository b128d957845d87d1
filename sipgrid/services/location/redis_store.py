"""The Location service on Redis: several Location and Connect instances share it, and a
restarted Location forgets nothing.

The same semantics as MemoryLocation. Each AOR is one hash (``<prefix>loc:<aor>``: a
field per contact, the route as Routr's protobuf led by the binding's times), changed by
one script in one round trip, and expiring with its last binding. Call-ID affinity is a
key per Call-ID that expires after an hour. Nothing grows for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
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


POOL_WAIT = 2.0  # how long a command waits for a connection of a full pool (s)


class _WaitingPool(aioredis.ConnectionPool):
    """A pool whose command waits, when all its ``max_connections`` are in use (100 by
    default; ``?max_connections=`` in the URL), for one to come back, up to POOL_WAIT s.
    redis-py's own pool fails it at once ("Too many connections"): one worker on Redis
    failed 49 of 10,000 digest REGISTER exchanges so at 1000/s (bench/README.md, session
    27). Not redis-py's BlockingConnectionPool: it enters a timeout scope, which needs a
    task, for every command, and a job of Connect sends its first command before it is
    one (sipgrid/services/eager.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._released = asyncio.Event()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        deadline = None
        while True:
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                now = asyncio.get_running_loop().time()
                deadline = now + POOL_WAIT if deadline is None else deadline
                if now >= deadline:
                    raise
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), deadline - now)

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self._released.set()


def redis_client(url: str) -> aioredis.Redis:
    """A client that survives a restart of Redis: a command that finds its pooled
    connection dead is sent again on a new one (three tries, a short backoff), so the
    first request after Redis is back does not fail. A command whose answer does not
    come within ``socket_timeout`` (5 s, redis-py's default; ``?socket_timeout=`` in the
    URL) fails the same way; one that finds every connection in use waits for one."""
    return aioredis.Redis.from_pool(
        _WaitingPool.from_url(
            url,
            retry=_CountedRetry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            socket_connect_timeout=2,
            health_check_interval=30,
        )
    )


# A stored route leads with the binding's times, so that a script can read them: a
# protobuf field no Route message has (1000, reserved in proto/location.proto;
# length-delimited), holding "<registered on, ms>:<expires, s>". A protobuf reader skips
# it (an older sipgrid, or a rolling upgrade's other instances, read the route as before).
TIMES_TAG = bytes([0xC2, 0x3E])  # the field's tag: (1000 << 3) | 2, as a varint

# The Lua both scripts begin with: a stored value's registration and end (ms), or nothing
# when the value has no times (stored by sipgrid before session 27).
_TIMES = """
local TAG = string.char(0xC2, 0x3E)
local function times(value)
  if #value < 3 or string.sub(value, 1, 2) ~= TAG then return nil end
  local text = string.sub(value, 4, 3 + string.byte(value, 3))
  local registered, lasts = string.match(text, '^(%d+):(%d+)$')
  if not registered then return nil end
  registered = tonumber(registered)
  return registered, registered + 1000 * tonumber(lasts)
end
local function newest_first(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end
"""

# KEYS[1]: an AOR's hash. ARGV: now (ms), the route's field (its contact key), when it was
# registered (ms), its expires (s; 0 removes it), the most contacts the AOR keeps (0: no
# limit), and the route (protobuf). Drops the expired routes and the route's older self,
# sets the route newest of all (a millisecond after the newest stored one, if need be:
# a hash keeps no order), keeps the newest max_contacts and sets the hash to expire with
# its last route. Answers the AOR's stored routes, newest first; or nothing, writing
# nothing, when a route there is stored without its times (by sipgrid before session 27).
_ADD = (
    _TIMES
    + """
local now, field = tonumber(ARGV[1]), ARGV[2]
local expires, most = tonumber(ARGV[4]), tonumber(ARGV[5])
local stored = redis.call('HGETALL', KEYS[1])
local kept, gone = {}, {}
for i = 1, #stored, 2 do
  local value = stored[i + 1]
  local registered, ends = times(value)
  if not registered then return false end
  if stored[i] == field or ends <= now then
    gone[#gone + 1] = stored[i]
  else
    kept[#kept + 1] = {stored[i], registered, ends, value}
  end
end
table.sort(kept, newest_first)
if expires > 0 then
  local registered = tonumber(ARGV[3])
  if kept[1] and registered <= kept[1][2] then registered = kept[1][2] + 1 end
  local text = string.format('%d:%d', registered, expires)
  local value = TAG .. string.char(#text) .. text .. ARGV[6]
  table.insert(kept, 1, {field, registered, registered + 1000 * expires, value})
  if most > 0 then
    for i = #kept, most + 1, -1 do
      gone[#gone + 1] = kept[i][1]
      kept[i] = nil
    end
  end
end
for i = 1, #gone, 200 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 199, #gone)))
end
if expires > 0 then redis.call('HSET', KEYS[1], field, kept[1][4]) end
local last, answer = 0, {}
for i, route in ipairs(kept) do
  if route[3] > last then last = route[3] end
  answer[i] = route[4]
end
if last > 0 then redis.call('PEXPIRE', KEYS[1], math.max(1, last - now)) end
return answer
"""
)

# KEYS[1]: an AOR's hash, KEYS[2]: a Call-ID's pinned contact. ARGV: now (ms), how long a
# pin lasts (s). Answers the route the Call-ID is pinned to while it lives; else the AOR's
# live routes, newest first, pinning the Call-ID to the first. Nothing when a route there
# is stored without its times.
_FIND = (
    _TIMES
    + """
local now = tonumber(ARGV[1])
local stored = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #stored, 2 do
  local registered, ends = times(stored[i + 1])
  if not registered then return false end
  if ends > now then live[#live + 1] = {stored[i], registered, stored[i + 1]} end
end
local pinned = redis.call('GET', KEYS[2])
for _, route in ipairs(live) do
  if route[1] == pinned then return {route[3]} end
end
table.sort(live, newest_first)
local answer = {}
for i, route in ipairs(live) do answer[i] = route[3] end
if live[1] then redis.call('SET', KEYS[2], live[1][1], 'EX', ARGV[2]) end
return answer
"""
)

# KEYS[1]: an AOR's hash. ARGV: n, then the n fields and values the writer read (n = 0:
# none, the hash missing), then the milliseconds until its last binding expires and the
# fields and values to write (nothing: none left). Writes only when the hash holds just
# what was read; 0 when another writer changed it meanwhile. Used to store an AOR's
# routes again with their times (``_upgrade``).
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
        self._add_script = client.register_script(_ADD)
        self._find_script = client.register_script(_FIND)
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

    def _pin_key(self, call_id: str) -> str:
        return f"{self._prefix}aff:{call_id}"

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        await self._add(aor, route, max_contacts)

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        """What find_routes would answer right after the add, without asking Redis again:
        the add's script answers the AOR's routes as it left them (a REGISTER's binding:
        one round trip, where it made four until session 24 and two until session 27)."""
        routes = await self._add(aor, route, max_contacts)
        now = self._clock()
        return [r for r in routes if r.expires_at() > now]

    async def _add(self, aor: str, route: Route, max_contacts: int) -> list[Route]:
        """Add, refresh or (expires 0) remove one contact; the AOR's routes as written,
        newest first.

        One script reads and writes the AOR in Redis, so writers of one AOR, in this
        instance or another, cannot overwrite each other's routes; and none waits for
        another (until session 27 a write read first and wrote only if nothing had
        changed meanwhile, two round trips, and writers of one AOR here took turns). An
        AOR stored without the routes' times (before session 27) is stored again with
        them first.
        """
        if route.expires > 0 and not route.registered_on:
            route.registered_on = self._clock()
        key = self._key(aor)
        args = (
            int(self._clock() * 1000),
            contact_key(route),
            int(route.registered_on * 1000),
            route.expires,
            max_contacts,
            convert.route_to_bytes(route),
        )
        for _ in range(RETRIES):
            stored = await self._add_script(keys=[key], args=args)
            if stored is None:  # stored without the times: store it again with them
                await self._upgrade(key)
                continue
            routes = [_route(_bytes(value)) for value in stored]
            if route.expires > 0:
                route.registered_on = routes[0].registered_on  # as the script set it
            return routes
        raise RuntimeError(f"location: too much contention on {aor}")

    async def _upgrade(self, key: str) -> None:
        """Store an AOR's routes again with their times, unless another writer changed
        them meanwhile (the add then finds out what is there again)."""
        stored = await self._redis.hgetall(key)
        routes = self._live(stored)
        read: list[bytes | str | int] = [len(stored)]
        for field_, value in stored.items():
            read += (field_, value)
        written: list[bytes | str | int] = []
        if routes:
            last = max(r.expires_at() for r in routes) - self._clock()
            written.append(max(1, int(last * 1000)))
            for r in routes:
                written += (contact_key(r), _stored(r))
        await self._write_if_unchanged(keys=[key], args=[*read, *written])

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]:
        if call_id and not labels:  # a call's: the routes and the pin in one round trip
            found = await self._find_script(
                keys=[self._key(aor), self._pin_key(call_id)],
                args=[int(self._clock() * 1000), int(AFFINITY_TTL)],
            )
            if found is not None:
                return [_route(_bytes(value)) for value in found]
            # routes stored without their times (before session 27): read as below
        if not call_id:
            stored, pinned = await self._redis.hgetall(self._key(aor)), None
        else:  # the routes and the call's pinned contact in one round trip
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._key(aor))
                pipe.get(self._pin_key(call_id))
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
                self._pin_key(call_id), contact_key(routes[0]), ex=int(AFFINITY_TTL)
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
        routes = [_route(_bytes(value)) for value in stored.values()]
        live = [r for r in routes if r.expires_at() > now]
        live.sort(key=lambda r: r.registered_on, reverse=True)
        return live


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _stored(route: Route) -> bytes:
    """A route as the hash keeps it: its times, then its protobuf."""
    times = b"%d:%d" % (int(route.registered_on * 1000), route.expires)
    return TIMES_TAG + bytes([len(times)]) + times + convert.route_to_bytes(route)


def _route(value: bytes) -> Route:
    """A stored route, with or without its times (the protobuf reader skips them); when
    they are there, they say when it was registered (the script may have moved that a
    millisecond on)."""
    route = convert.route_from_bytes(value)
    if value[:2] == TIMES_TAG:
        registered, _, _ = value[3 : 3 + value[2]].partition(b":")
        route.registered_on = int(registered) / 1000
    return route
