"""Memory per binding: BENCH_BINDINGS (100,000) bindings as the registrar makes them, in
the in-memory Location (RSS of this process) and in Redis (the server's used_memory, in a
database of its own, emptied afterwards). Figures to bench/results/memory.json."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from pathlib import Path

import redis

from sipgrid.api.types import LocationService, NetInterface, Route, Transport
from sipgrid.services.location.redis_store import RedisLocation
from sipgrid.services.location.service import MemoryLocation

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
COUNT = int(os.environ.get("BENCH_BINDINGS", "100000"))
REDIS_URL = os.environ.get("SIPGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/15"
POINTS = [NetInterface("203.0.113.10", 5060, t) for t in (Transport.UDP, Transport.TCP)]


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def binding(i: int) -> tuple[str, Route]:
    """What the registrar stores for a phone behind NAT on UDP."""
    host = f"198.51.{i // 250 % 250}.{i % 250}"
    port = 5060 + i % 1000
    return f"sip:{i}@sip.local", Route(
        user=str(i),
        host=host,
        port=port,
        transport=Transport.UDP,
        advertised_host=f"192.168.1.{i % 250}",
        advertised_port=5060,
        expires=3600,
        edge_port_ref="edgeport-01",
        listening_points=list(POINTS),
        localnets=["127.0.0.1/8"],
        contact_uri=f"sip:{i}@192.168.1.{i % 250}:5060;transport=udp",
    )


async def fill(location: LocationService) -> None:
    for i in range(COUNT):
        aor, route = binding(i)
        await location.add_route(aor, route)


def main() -> None:
    found: dict[str, object] = {"bindings": COUNT}
    gc.collect()
    before = rss()
    memory = MemoryLocation()
    asyncio.run(fill(memory))
    gc.collect()
    found["memory_bytes_per_binding"] = round((rss() - before) / COUNT)
    print(f"  in memory: {found['memory_bytes_per_binding']} bytes per binding", flush=True)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    used = int(client.info("memory")["used_memory"])

    async def into_redis() -> None:
        location = RedisLocation.from_url(REDIS_URL, prefix="bench:")
        await fill(location)
        await location.close()

    asyncio.run(into_redis())
    found["redis_bytes_per_binding"] = round(
        (int(client.info("memory")["used_memory"]) - used) / COUNT
    )
    client.flushdb()
    print(f"  in Redis: {found['redis_bytes_per_binding']} bytes per binding", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
