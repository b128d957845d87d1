"""Next-hop resolution per RFC 3263 section 4: NAPTR, then SRV, then A/AAAA.

A :class:`~sipgrid.sip.Target` from ``locate()`` says what the URI already decided.
NAPTR picks the transport when nothing did (section 4.1), SRV picks hosts and ports by
priority and weight (RFC 2782) when no port was given (section 4.2), and A/AAAA give
the addresses. The result is the ordered list of targets the core walks through on a
transport error, a timeout or a 503 (section 4.3). dnspython's asyncio resolver asks
the system's name servers, or those in ``DNS_SERVERS`` ("127.0.0.1:5353,..."); names
DNS does not know fall back to the system lookup (``/etc/hosts``).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterable

import dns.asyncresolver
import dns.exception
import dns.resolver

from sipgrid.api.types import NetInterface, Transport
from sipgrid.sip import Target, default_port, is_ip

# NAPTR services (RFC 3263 section 4.1, RFC 7118 section 9) and the SRV prefixes
NAPTR_SERVICES = {
    "SIP+D2U": Transport.UDP,
    "SIP+D2T": Transport.TCP,
    "SIPS+D2T": Transport.TLS,
    "SIP+D2W": Transport.WS,
    "SIPS+D2W": Transport.WSS,
}
CACHE_TTL = 30.0  # seconds an answer (or a failure) is reused
CACHE_MAX = 10_000

SRV_PREFIX = {
    Transport.UDP: "_sip._udp",
    Transport.TCP: "_sip._tcp",
    Transport.TLS: "_sips._tcp",
    Transport.WS: "_sip._ws",
    Transport.WSS: "_sips._ws",
}


class Resolver:
    def __init__(
        self,
        transports: Iterable[Transport] = (Transport.UDP, Transport.TCP),
        servers: str = "",
        *,
        ipv6: bool = False,
        timeout: float = 3.0,
    ) -> None:
        """``transports``: those we can send on, in order of preference when DNS has no say."""
        self.transports = list(dict.fromkeys(transports))
        self.ipv6 = ipv6
        if servers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = []
            for server in servers.split(","):
                host, _, port = server.strip().rpartition(":")
                self._dns.nameservers.append(host.strip("[]"))
                self._dns.port = int(port)
        else:
            try:
                self._dns = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._dns = dns.asyncresolver.Resolver(configure=False)
                self._dns.nameservers = ["127.0.0.1"]
        self._dns.lifetime = timeout
        self._cache: dict[Target, tuple[float, list[NetInterface]]] = {}
        self._pending: dict[Target, asyncio.Future[list[NetInterface]]] = {}

    async def resolve(self, target: Target) -> list[NetInterface]:
        """The targets to try, best first; empty when nothing resolves. Answers are kept
        for CACHE_TTL seconds (failures too), and one lookup serves all who wait for it."""
        if target.numeric:
            return await self._resolve(target)
        now = time.monotonic()
        hit = self._cache.get(target)
        if hit is not None and hit[0] > now:
            return list(hit[1])
        pending = self._pending.get(target)
        if pending is None:
            pending = asyncio.ensure_future(self._resolve(target))
            self._pending[target] = pending
            try:
                found = await pending
            finally:
                del self._pending[target]
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[target] = (time.monotonic() + CACHE_TTL, found)
            return list(found)
        return list(await asyncio.shield(pending))

    async def _resolve(self, target: Target) -> list[NetInterface]:
        if target.numeric:
            transport = Transport.parse(target.transport or target.default_transport)
            return [
                NetInterface(target.host, target.port or default_port(transport.value), transport)
            ]
        if target.port is not None:  # section 4.2: a port means A/AAAA, no SRV
            transport = Transport.parse(target.transport or target.default_transport)
            return await self._addresses(target.host, target.port, transport)
        if target.transport is not None:
            transport = Transport.parse(target.transport)
            found = await self._srv(f"{SRV_PREFIX[transport]}.{target.host}", transport)
            return found or await self._addresses(
                target.host, default_port(transport.value), transport
            )
        found = await self._naptr(target)
        if found:
            return found
        for transport in self._allowed(target.secure):  # no NAPTR: SRV for each (4.1)
            found = await self._srv(f"{SRV_PREFIX[transport]}.{target.host}", transport)
            if found:
                return found
        transport = Transport.parse(target.default_transport)
        return await self._addresses(target.host, default_port(transport.value), transport)

    def _allowed(self, secure: bool) -> list[Transport]:
        if secure:
            return [t for t in self.transports if t in (Transport.TLS, Transport.WSS)]
        return self.transports

    async def _naptr(self, target: Target) -> list[NetInterface]:
        answer = await self._query(target.host, "NAPTR")
        records = sorted(answer, key=lambda r: (r.order, r.preference))
        allowed = self._allowed(target.secure)
        for record in records:
            service = record.service.decode().upper()
            transport = NAPTR_SERVICES.get(service)
            if (
                transport is None
                or transport not in allowed
                or record.flags.decode().lower() != "s"
            ):
                continue
            found = await self._srv(str(record.replacement).rstrip("."), transport)
            if found:
                return found
        return []

    async def _srv(self, name: str, transport: Transport) -> list[NetInterface]:
        answer = await self._query(name, "SRV")
        out: list[NetInterface] = []
        for record in _by_priority_and_weight(answer):
            host = str(record.target).rstrip(".")
            if host:
                out += await self._addresses(host, record.port, transport)
        return out

    async def _addresses(self, host: str, port: int, transport: Transport) -> list[NetInterface]:
        if is_ip(host):
            return [NetInterface(host.strip("[]"), port, transport)]
        kinds = ["A", "AAAA"] if self.ipv6 else ["A"]
        found: list[str] = []
        for kind in kinds:
            found += [r.address for r in await self._query(host, kind)]
        if not found:  # names DNS does not know: the system's lookup (/etc/hosts)
            family = socket.AF_UNSPEC if self.ipv6 else socket.AF_INET
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, family=family, type=socket.SOCK_DGRAM
                )
            except OSError:
                return []
            found = [str(info[4][0]) for info in infos]
        return [NetInterface(address, port, transport) for address in dict.fromkeys(found)]

    async def _query(self, name: str, kind: str) -> list:  # type: ignore[type-arg]
        try:
            answer = await self._dns.resolve(name, kind, search=False, raise_on_no_answer=False)
        except (dns.exception.DNSException, OSError):
            return []
        return list(answer) if answer.rrset is not None else []


def _by_priority_and_weight(records: list) -> list:  # type: ignore[type-arg]
    """RFC 2782: lowest priority first; within one, a weighted random order."""
    out = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            pick = random.uniform(0, total) if total else 0
            for index, record in enumerate(group):
                pick -= record.weight
                if pick <= 0 or index == len(group) - 1:
                    out.append(group.pop(index))
                    break
    return out
