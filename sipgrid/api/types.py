"""Domain types shared by the services (never protobufs; see convert.py for the wire)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Protocol

from sipgrid.sip import Request, Response


class Transport(enum.Enum):
    """Routr's common.Transport, by value the lower-case name used in URIs and configs."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    SCTP = "sctp"
    WS = "ws"
    WSS = "wss"

    # Each member is the only one of its value, so its identity is its hash: a C slot
    # rather than Enum's hash(self._name_) in Python, on every NetInterface hashed
    __hash__ = object.__hash__

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def via_name(self) -> str:
        return self._value_.upper()

    @classmethod
    def parse(cls, text: str) -> Transport:
        # a dict, not cls(...): Enum's lookup by value is three Python calls
        found = _TRANSPORTS.get(text.lower())
        if found is None:
            raise ValueError(f"{text!r} is not a valid Transport")
        return found


_TRANSPORTS: Final = {t.value: t for t in Transport}


# The classes made for every message have their __init__ written out: this module is
# compiled with the SIP core (native/build.py), and mypyc compiles these, but leaves the
# ones dataclass would generate to the interpreter, five times dearer (bench/README.md).


@dataclass(frozen=True, slots=True, init=False)
class NetInterface:
    """A transport address: a listening point, a sender, a destination, or a flow (a
    connection is named by its transport and the remote address)."""

    host: str
    port: int
    transport: Transport

    def __init__(self, host: str, port: int, transport: Transport = Transport.UDP) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "transport", transport)

    # written out too: flows are dict keys, and dataclass's are interpreted
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetInterface):
            return NotImplemented
        return (
            self.port == other.port
            and self.host == other.host
            and self.transport is other.transport
        )

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.transport))

    def __str__(self) -> str:
        # _value_, not value: Enum's value is a property written in Python
        return f"{self.transport._value_}:{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> NetInterface:
        """ "udp:host:port" (an IPv6 host keeps its colons, brackets or not) to a NetInterface."""
        transport, _, rest = text.partition(":")
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not a transport address: {text!r}")
        return NetInterface(host.strip("[]"), int(port), Transport.parse(transport))

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


# Routr's metadata keys for what sipgrid passes as typed fields in process; the strings are
# made and read only at the gRPC boundary (sipgrid.api.convert).
# where to send a forwarded request: "udp:host:port"
META_DESTINATION: Final = "sipgrid.destination"
# a connection to prefer while open: "tcp:host:port"
META_TARGET_FLOW: Final = "sipgrid.target-flow"
META_DROP: Final = "sipgrid.drop"  # "1": send nothing (an ACK with nowhere to go)
META_ALTERNATIVES: Final = "sipgrid.alternatives"  # Request-URIs to try next, one per line
# one branch a line: JSON [uri, destination, flow, [record-route]]
META_FORKS: Final = "sipgrid.forks"
META_TARGET_TRANSPORT: Final = "sipgrid.target-transport"  # post-processors: "WS", "UDP", ...
# "pass": this processor passes every response through unchanged, so the EdgePort may
# stop sending it responses (it asks again when an answer comes without it)
META_RESPONSES: Final = "sipgrid.responses"
# "username\npassword" to answer the next hop's challenge
META_CREDENTIALS: Final = "sipgrid.credentials"
# "1": the EdgePort may route the in-dialog requests of the dialog this INVITE starts by
# itself (a sipgrid extension: see MessageResponse.follow_dialog)
META_FOLLOW_DIALOG: Final = "sipgrid.follow-dialog"


@dataclass(slots=True, init=False)
class MessageRequest:
    """What an EdgePort hands to its processor (Routr's processor.MessageRequest).

    ``sender`` is also the flow the message came on: for a connection, its transport and
    the remote address name it.
    """

    ref: str
    edge_port_ref: str
    method: str
    sender: NetInterface
    listening_points: list[NetInterface]
    message: Request | Response
    external_addrs: list[str]
    localnets: list[str]
    metadata: dict[str, str]

    def __init__(
        self,
        ref: str,
        edge_port_ref: str,
        method: str,
        sender: NetInterface,
        listening_points: list[NetInterface],
        message: Request | Response,
        external_addrs: list[str] | None = None,
        localnets: list[str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.ref = ref
        self.edge_port_ref = edge_port_ref
        self.method = method
        self.sender = sender
        self.listening_points = listening_points
        self.message = message
        self.external_addrs = [] if external_addrs is None else external_addrs
        self.localnets = [] if localnets is None else localnets
        self.metadata = {} if metadata is None else metadata


@dataclass(frozen=True, slots=True)
class Fork:
    """One branch of a parallel fork: where to send a copy of the request, and the
    Record-Route values (already made) to put on top of that copy."""

    uri: str
    destination: NetInterface | None = None
    target_flow: NetInterface | None = None
    record_route: tuple[str, ...] = ()


@dataclass(slots=True, init=False)
class MessageResponse:
    """What a processor answers: a response to send back, or a request to send on.

    For a request: ``destination`` is where to send it (else its top Route or its
    Request-URI, located per RFC 3263), ``target_flow`` a connection to prefer while it is
    open, ``drop`` says to send nothing (an ACK with nowhere to go). ``alternatives``
    are Request-URIs to try in turn when the target fails (a timeout, a transport
    error, 408 or 5xx): serial forking, RFC 3261 section 16.7; a 6xx ends the search.
    ``credentials`` (username, password) answer a 401 or 407 of the next hop, once per
    target (a trunk's outbound credentials; they never go on the wire in clear).
    ``forks``, when given, ring every branch at once (RFC 3261 section 16.7, parallel):
    the message is then the template each branch copies.
    ``follow_dialog``, on a forwarded INVITE that starts a dialog: the processor needs
    nothing of the dialog's later requests but loose routing over the Record-Route it put
    in (RFC 3261 section 16.12), so the EdgePort may do that itself, without asking it
    (``sipgrid.services.connect.context.follow_route_set``, the processor's own rule).
    """

    message: Request | Response
    metadata: dict[str, str]
    destination: NetInterface | None
    target_flow: NetInterface | None
    drop: bool
    alternatives: list[str]
    credentials: tuple[str, str] | None
    forks: list[Fork]
    follow_dialog: bool

    def __init__(
        self,
        message: Request | Response,
        metadata: dict[str, str] | None = None,
        destination: NetInterface | None = None,
        target_flow: NetInterface | None = None,
        drop: bool = False,
        alternatives: list[str] | None = None,
        credentials: tuple[str, str] | None = None,
        forks: list[Fork] | None = None,
        follow_dialog: bool = False,
    ) -> None:
        self.message = message
        self.metadata = {} if metadata is None else metadata
        self.destination = destination
        self.target_flow = target_flow
        self.drop = drop
        self.alternatives = [] if alternatives is None else alternatives
        self.credentials = credentials
        self.forks = [] if forks is None else forks
        self.follow_dialog = follow_dialog


class Processor(Protocol):
    """Routr's Processor service: the Dispatcher, the Connect processor, middlewares.

    ``handles_responses`` is False for a processor that passes every response through
    unchanged: an EdgePort calling it in process then skips that call.

    A processor may also offer ``submit(request, done) -> bool``, the same call without a
    coroutine: sent at once, its answer handed to ``done`` (None when it failed), or False
    with nothing sent. The EdgePort uses it where it is there (``GrpcProcessor.submit``,
    on a processor's frames) and awaits ``process_message`` otherwise.
    """

    @property
    def handles_responses(self) -> bool: ...

    async def process_message(self, request: MessageRequest) -> MessageResponse: ...


class ProcessorUnavailable(Exception):
    """The processor could not be reached or failed; the EdgePort answers 503."""


@dataclass(slots=True, init=False)
class Route:
    """A binding of an AOR (Routr's location.Route, plus the Contact URI and flow)."""

    user: str
    host: str
    port: int
    transport: Transport
    advertised_host: str
    advertised_port: int
    registered_on: float
    expires: int
    session_count: int
    edge_port_ref: str
    listening_points: list[NetInterface]
    localnets: list[str]
    external_addrs: list[str]
    labels: dict[str, str]
    contact_uri: str
    # the connection the binding was made on (stream transports): preferred while open
    flow: str

    def __init__(
        self,
        user: str,
        host: str,
        port: int,
        transport: Transport = Transport.UDP,
        advertised_host: str = "",
        advertised_port: int = 0,
        registered_on: float = 0.0,
        expires: int = 3600,
        session_count: int = 0,
        edge_port_ref: str = "",
        listening_points: list[NetInterface] | None = None,
        localnets: list[str] | None = None,
        external_addrs: list[str] | None = None,
        labels: dict[str, str] | None = None,
        contact_uri: str = "",
        flow: str = "",
    ) -> None:
        self.user = user
        self.host = host
        self.port = port
        self.transport = transport
        self.advertised_host = advertised_host
        self.advertised_port = advertised_port
        self.registered_on = registered_on
        self.expires = expires
        self.session_count = session_count
        self.edge_port_ref = edge_port_ref
        self.listening_points = [] if listening_points is None else listening_points
        self.localnets = [] if localnets is None else localnets
        self.external_addrs = [] if external_addrs is None else external_addrs
        self.labels = {} if labels is None else labels
        self.contact_uri = contact_uri
        self.flow = flow

    def expires_at(self) -> float:
        return self.registered_on + self.expires

    @property
    def destination(self) -> NetInterface:
        return NetInterface(self.host, self.port, self.transport)


@dataclass(frozen=True, slots=True)
class Binding:
    """A current binding as listed by Location: the AOR and its route."""

    aor: str
    route: Route


class LocationService(Protocol):
    """Routr's Location service, plus listing the bindings."""

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None: ...

    async def add_route_and_find(
        self, aor: str, route: Route, max_contacts: int = 0
    ) -> list[Route]:
        """``add_route``, then ``find_routes(aor)``: the routes a registrar's 200 lists,
        in one round trip to a Location in another process (sipgrid's stream)."""
        ...

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]: ...

    async def remove_routes(self, aor: str) -> None: ...

    async def list_bindings(self) -> list[Binding]: ...
