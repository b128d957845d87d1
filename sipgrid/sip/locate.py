"""Where a URI points: RFC 3263 section 4, the part that needs no DNS.

:func:`locate` reads a SIP or SIPS URI (a Request-URI, a Route, a Contact) and says
which host to look up, on which port and transport, and what is left for DNS to decide:
NAPTR picks the transport when the URI names none and the host is a name without a
port (section 4.1); SRV picks the port when the URI gives none for a name (section 4.2).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Final

from .uri import SipUri

TRANSPORTS: Final = frozenset({"udp", "tcp", "tls", "sctp", "ws", "wss"})
_DEFAULT_PORTS: Final = {"tls": 5061, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True, init=False)
class Target:
    """A URI's next-hop target before DNS."""

    host: str  # maddr if present, else the host; IPv6 without brackets
    port: int | None  # None: SRV may say, else the transport's default
    transport: str | None  # None: NAPTR may say, else udp (sip:) or tls (sips:)
    secure: bool  # sips: only TLS (or WSS) will do

    def __init__(self, host: str, port: int | None, transport: str | None, secure: bool) -> None:
        # written out, as mypyc compiles it (headers.Via says why)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "secure", secure)

    @property
    def numeric(self) -> bool:
        return is_ip(self.host)

    @property
    def default_transport(self) -> str:
        return "tls" if self.secure else "udp"

    @property
    def default_port(self) -> int:
        return default_port(self.transport or self.default_transport)


def default_port(transport: str) -> int:
    """RFC 3261 section 19.1.2 (5060, 5061 for TLS); RFC 7118 section 5 leaves WebSocket
    ports to the URI, so the HTTP defaults stand."""
    return _DEFAULT_PORTS.get(transport, 5060)


@functools.lru_cache(maxsize=8192)
def is_ip(host: str) -> bool:
    """An IPv4 or IPv6 address, not a name (asked for every datagram sent: cached)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_of(addr: str) -> str:
    """The host of "host", "host:port", "[v6]:port" or a bare IPv6 address, lower case
    and without brackets (external addresses in configs come in all these forms)."""
    if addr.startswith("["):
        return addr[1:].split("]", 1)[0].lower()
    if addr.count(":") > 1:
        return addr.lower()
    return addr.split(":", 1)[0].lower()


def locate(uri: SipUri) -> Target:
    """RFC 3263 section 4.1: a transport parameter decides; else a numeric host or an
    explicit port means UDP (sip:) or TLS over TCP (sips:); else NAPTR is to be asked."""
    host = (uri.maddr or uri.host).strip("[]")
    transport = uri.transport if uri.transport in TRANSPORTS else None
    if transport == "tcp" and uri.secure:
        transport = "tls"
    if transport is None and (is_ip(host) or uri.port is not None):
        transport = "tls" if uri.secure else "udp"
    return Target(host, uri.port, transport, uri.secure)
