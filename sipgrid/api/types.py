"""Domain types shared by the services (never protobufs; see convert.py for the wire)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from sipgrid.sip import Request, Response


class Transport(enum.Enum):
    """Routr's common.Transport, by value the lower-case name used in URIs and configs."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    SCTP = "sctp"
    WS = "ws"
    WSS = "wss"

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def via_name(self) -> str:
        return self.value.upper()

    @classmethod
    def parse(cls, text: str) -> Transport:
        return cls(text.lower())


@dataclass(frozen=True, slots=True)
class NetInterface:
    host: str
    port: int
    transport: Transport = Transport.UDP

    def __str__(self) -> str:
        return f"{self.transport.value}:{self.host}:{self.port}"


# Metadata keys of the EdgePort <-> processor exchange (MessageRequest/Response.metadata).
META_FLOW = "sipgrid.flow"  # the connection a message came on: "tcp:host:port"
META_DESTINATION = "sipgrid.destination"  # where to send a forwarded request: "udp:host:port"
META_TARGET_FLOW = (
    "sipgrid.target-flow"  # a connection to prefer for it while open: "tcp:host:port"
)
META_DROP = "sipgrid.drop"  # "1": send nothing (an ACK with nowhere to go)


@dataclass(slots=True)
class MessageRequest:
    """What an EdgePort hands to its processor (Routr's processor.MessageRequest)."""

    ref: str
    edge_port_ref: str
    method: str
    sender: NetInterface
    listening_points: list[NetInterface]
    message: Request | Response
    external_addrs: list[str] = field(default_factory=list)
    localnets: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MessageResponse:
    """What a processor answers: a response to send back, or a request to send on."""

    message: Request | Response
    metadata: dict[str, str] = field(default_factory=dict)


class Processor(Protocol):
    """Routr's Processor service: the Dispatcher, the Connect processor, middlewares."""

    async def process_message(self, request: MessageRequest) -> MessageResponse: ...


class ProcessorUnavailable(Exception):
    """The processor could not be reached or failed; the EdgePort answers 503."""


@dataclass(slots=True)
class Route:
    """A binding of an AOR (Routr's location.Route, plus the Contact URI and flow)."""

    user: str
    host: str
    port: int
    transport: Transport = Transport.UDP
    advertised_host: str = ""
    advertised_port: int = 0
    registered_on: float = 0.0
    expires: int = 3600
    session_count: int = 0
    edge_port_ref: str = ""
    listening_points: list[NetInterface] = field(default_factory=list)
    localnets: list[str] = field(default_factory=list)
    external_addrs: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    contact_uri: str = ""
    # the connection the binding was made on (stream transports): preferred while open
    flow: str = ""

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

    async def find_routes(
        self, aor: str, call_id: str = "", labels: dict[str, str] | None = None
    ) -> list[Route]: ...

    async def remove_routes(self, aor: str) -> None: ...

    async def list_bindings(self) -> list[Binding]: ...
