"""What the Connect processor reads on the SIP path: the resources, indexed.

Made by resources.py from Routr's files or from the store; compiled with the SIP core
(native/build.py), so that Connect's lookups on every request (a domain, an agent, a
password, an access control list's verdict) are native calls and native attribute reads,
not the interpreter's (session 19: bench/README.md).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

from sipgrid.sip.uri import remembered


@dataclass(frozen=True, slots=True)
class AccessControlList:
    ref: str
    name: str
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    deny: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    # address -> (an allow rule matches, permitted): asked for every request, and the
    # rules never change (a reload makes a new list); bounded as the SIP core's memos
    _decided: dict[str, tuple[bool, bool]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def explicitly_allows(self, address: str) -> bool:
        """An allow rule matches and no deny rule is more specific than it."""
        return self._decide(address)[0]

    def permits(self, address: str) -> bool:
        """Allowed when an allow rule matches; else denied when a deny rule matches."""
        return self._decide(address)[1]

    def _decide(self, address: str) -> tuple[bool, bool]:
        decided = self._decided.get(address)
        if decided is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                decided = (False, False)
            else:
                allowed = any(ip in net for net in self.allow)
                decided = (allowed, allowed or not any(ip in net for net in self.deny))
            remembered(self._decided, address, decided)
        return decided


@dataclass(frozen=True, slots=True)
class Credentials:
    ref: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Calls from a domain whose callee matches ``rule`` go out as ``number``."""

    rule: re.Pattern[str]
    number_ref: str


@dataclass(frozen=True, slots=True)
class Domain:
    ref: str
    name: str
    domain_uri: str
    acl: AccessControlList | None
    egress_policies: tuple[EgressPolicy, ...] = ()
    # what its challenges offer, preferred first (extended.digestAlgorithms; empty: default)
    digest_algorithms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Agent:
    ref: str
    name: str
    username: str
    domain: Domain
    credentials: Credentials | None
    privacy: str  # "PRIVATE" or "NONE"
    enabled: bool
    max_contacts: int
    expires: int


@dataclass(frozen=True, slots=True)
class TrunkUri:
    host: str
    port: int
    transport: str  # "" for the default (UDP)
    user: str  # the URI's user parameter, e.g. "phone"
    weight: int
    priority: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Trunk:
    ref: str
    name: str
    inbound_uri: str
    acl: AccessControlList | None
    inbound_credentials: Credentials | None
    outbound_credentials: Credentials | None
    send_register: bool
    uris: tuple[TrunkUri, ...]

    @property
    def realm(self) -> str:
        """The digest realm a provider answers in when the trunk asks for credentials."""
        return self.inbound_uri or self.ref


@dataclass(frozen=True, slots=True)
class Number:
    ref: str
    name: str
    tel_url: str
    aor_link: str
    trunk: Trunk | None
    session_affinity_header: str
    extra_headers: tuple[tuple[str, str], ...]

    @property
    def digits(self) -> str:
        return number_key(self.tel_url)


@dataclass(frozen=True, slots=True)
class Peer:
    ref: str
    name: str
    username: str
    aor: str
    contact_addr: str
    credentials: Credentials | None
    acl: AccessControlList | None
    balancing_algorithm: str  # "ROUND_ROBIN", "LEAST_SESSIONS" or "UNSPECIFIED"
    with_session_affinity: bool
    enabled: bool
    max_contacts: int
    expires: int

    @property
    def realm(self) -> str:
        """The digest realm of the peer: the host of its AOR (``sip:voice@media`` gives
        ``media``), so that every instance of a media server shares it."""
        rest = self.aor.partition(":")[2]
        return rest.rpartition("@")[2].split(";", 1)[0] or self.username


# The user part of the Contact the Registry registers for a trunk: "sg-trunk-<ref>".
TRUNK_CONTACT_PREFIX: Final = "sg-trunk-"


def number_key(text: str) -> str:
    """A telephone number as looked up: no ``tel:``, no leading ``+``, no separators
    (RFC 3966 visual separators), so "tel:+1 (785) 317-8070" is "17853178070"."""
    text = text.removeprefix("tel:").split(";", 1)[0]
    return "".join(c for c in text if c not in "+-.() ")


def aor_key(aor: str) -> str:
    """An address of record as Location keys it: scheme, user and host, host in lower case."""
    scheme, _, rest = aor.partition(":")
    user, at, host = rest.rpartition("@")
    host = host.split(";", 1)[0].split(":", 1)[0] if not host.startswith("[") else host
    return f"{scheme.lower()}:{user}{at}{host.lower()}"


@dataclass(slots=True)
class Resources:
    """What the Connect processor reads: indexed for lookups on the SIP path."""

    domains: dict[str, Domain] = field(default_factory=dict)  # by domain URI (lower case)
    agents: dict[tuple[str, str], Agent] = field(default_factory=dict)  # by (domain URI, username)
    numbers: dict[str, Number] = field(default_factory=dict)  # by number_key
    trunks: list[Trunk] = field(default_factory=list)
    peers: dict[str, Peer] = field(default_factory=dict)  # by username
    peers_by_aor: dict[str, Peer] = field(default_factory=dict)  # by aor_key
    by_ref: dict[str, object] = field(default_factory=dict)

    def domain(self, host: str) -> Domain | None:
        return self.domains.get(host.lower())

    def agent(self, domain_uri: str, username: str) -> Agent | None:
        return self.agents.get((domain_uri.lower(), username))

    def password_for(self, domain_uri: str, username: str) -> str | None:
        """The password of an enabled agent with credentials, else None (not allowed in)."""
        agent = self.agent(domain_uri, username)
        if agent is None or agent.credentials is None or not agent.enabled:
            return None
        return agent.credentials.password

    def number(self, user: str) -> Number | None:
        key = number_key(user)
        return self.numbers.get(key) if key else None

    def number_by_ref(self, ref: str) -> Number | None:
        found = self.by_ref.get(ref)
        return found if isinstance(found, Number) else None

    def peer(self, username: str) -> Peer | None:
        return self.peers.get(username)

    def peer_by_aor(self, aor: str) -> Peer | None:
        return self.peers_by_aor.get(aor_key(aor))

    def trunk_by_inbound_uri(self, host: str) -> Trunk | None:
        host = host.lower()
        return next((t for t in self.trunks if t.inbound_uri.lower() == host), None)

    def trunk_by_contact_user(self, user: str) -> Trunk | None:
        """The trunk whose registered Contact has this user part (the Registry's)."""
        if not user.startswith(TRUNK_CONTACT_PREFIX):
            return None
        ref = user.removeprefix(TRUNK_CONTACT_PREFIX)
        return next((t for t in self.trunks if t.ref == ref and t.send_register), None)

    def trunks_allowing(self, address: str) -> list[Trunk]:
        """Trunks whose access control list lets this source address in by an allow rule."""
        return [t for t in self.trunks if t.acl is not None and t.acl.explicitly_allows(address)]


class Current:
    """The resources as last read, for Connect to call: ``refresh`` swaps them.

    The readers that reload the resources (the store's, the APIServer's) are plain
    Python; their ``__call__`` ran an interpreted frame for every REGISTER and INVITE,
    where this one, compiled, does not."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def __call__(self) -> Resources:
        return self.resources
