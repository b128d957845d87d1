"""What the Connect processor decides about PSTN and peer calls, without I/O: the order
of a trunk's outbound URIs, the caller identity a provider sees, and the choice among
the instances of a peer."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any, Protocol

from sipgrid.api.types import Route

from .index import Number, Peer, Trunk, TrunkUri, number_key

# The headers a peer uses to ask for a number and for privacy on a call to the PSTN.
DOD_NUMBER = "X-DOD-Number"
DOD_PRIVACY = "X-DOD-Privacy"
# What a peer reports of its load when it registers (LEAST_SESSIONS).
SESSION_COUNT = "X-Session-Count"


def trunk_targets(trunk: Trunk, user: str, rng: random.Random | None = None) -> list[str]:
    """The Request-URIs to try for ``user`` through a trunk, best first.

    The enabled URIs by priority (lowest first); among equal priorities an order drawn
    by weight, as RFC 2782 orders SRV records, so that heavier URIs come first more often.
    """
    rng = rng or random.Random()
    uris = [u for u in trunk.uris if u.enabled and u.host]
    ordered: list[TrunkUri] = []
    for priority in sorted({u.priority for u in uris}):
        group = [u for u in uris if u.priority == priority]
        while group:
            total = sum(max(u.weight, 0) for u in group)
            if total <= 0:
                ordered += group
                break
            pick = rng.uniform(0, total)
            for u in group:
                pick -= max(u.weight, 0)
                if pick <= 0:
                    break
            ordered.append(u)
            group.remove(u)
    return [_uri(u, user) for u in ordered]


def _uri(uri: TrunkUri, user: str) -> str:
    host = f"[{uri.host}]" if ":" in uri.host and not uri.host.startswith("[") else uri.host
    text = f"sip:{user}@{host}"
    if uri.port:
        text += f":{uri.port}"
    if uri.transport and uri.transport != "udp":
        text += f";transport={uri.transport}"
    if uri.user:
        text += f";user={uri.user}"
    return text


def identity_headers(number: Number, name: str, private: bool, host: str) -> list[tuple[str, str]]:
    """Who calls, as the provider reads it: the Number, asserted (RFC 3325), in the older
    Remote-Party-ID form many providers still want, and the caller's privacy (RFC 3323)."""
    display = f'"{_quoted(name)}" ' if name else ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    uri = f"sip:{number_key(number.tel_url)}@{host}"
    privacy = "full" if private else "off"
    return [
        ("P-Asserted-Identity", f"{display}<{uri}>"),
        ("Remote-Party-ID", f"{display}<{uri}>;party=calling;screen=yes;privacy={privacy}"),
        ("Privacy", "id" if private else "none"),
    ]


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def wants_privacy(value: str | None) -> bool:
    """X-DOD-Privacy: "private" (or Routr's "PRIVATE", or an RFC 3323 "id") hides the caller."""
    return (value or "").strip().lower() in ("private", "id", "true", "yes", "1")


class Turns(Protocol):
    """Round-robin counters: the next turn of a name (0, 1, 2...)."""

    async def next(self, name: str) -> int: ...


class MemoryTurns:
    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    async def next(self, name: str) -> int:
        turn = self._next.get(name, 0)
        self._next[name] = turn + 1
        return turn


class RedisTurns:
    """Shared by every Connect instance on one Redis: one round-robin sequence for all.
    A counter expires a day after its last use."""

    def __init__(self, client: Any, *, prefix: str = "sipgrid:", ttl: int = 86400) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = ttl

    async def next(self, name: str) -> int:
        key = f"{self._prefix}rr:{name}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._ttl)
            value, _ = await pipe.execute()
        return int(value) - 1


class Balancer:
    """Picks one instance of a peer for a new call (Routr's loadBalancing).

    ROUND_ROBIN goes around the instances in a stable order (by contact), with turns
    shared through Redis when Connect has one; LEAST_SESSIONS takes the one that
    reported the fewest sessions; with session affinity, calls with the same affinity
    value (a header's value) go to the same instance while the set of instances is
    unchanged, with no state at all.
    """

    def __init__(self, turns: Turns | None = None) -> None:
        self._turns = turns or MemoryTurns()

    async def pick(self, peer: Peer, routes: Sequence[Route], affinity: str = "") -> Route:
        ordered = sorted(routes, key=lambda r: r.contact_uri or f"{r.host}:{r.port}")
        if peer.with_session_affinity and affinity:
            digest = hashlib.sha256(affinity.encode()).digest()
            return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
        if peer.balancing_algorithm == "LEAST_SESSIONS":
            return min(ordered, key=lambda r: r.session_count)
        return ordered[await self._turns.next(peer.ref) % len(ordered)]
