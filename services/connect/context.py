"""Helpers the Connect processor shares between registrar and routing."""

from __future__ import annotations

from sipgrid.api.types import MessageRequest, NetInterface, Transport
from sipgrid.sip import NameAddr, Request, SipUri, make_response
from sipgrid.sip.message import Response

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY"


def is_ours(uri: SipUri, request: MessageRequest) -> bool:
    """True when a URI names this EdgePort (a listening point or an external address)."""
    host = uri.host.lower()
    port = uri.port
    for lp in request.listening_points:
        if lp.host.lower() == host and (port is None or port == lp.port):
            return True
    return any(addr.split(":")[0].lower() == host for addr in request.external_addrs)


def pop_own_routes(message: Request, request: MessageRequest) -> None:
    """Remove the top Route values that point at us (loose routing, RFC 3261 section 16.4)."""
    while True:
        routes = message.routes
        if not routes or routes[0].sip_uri is None or not is_ours(routes[0].sip_uri, request):
            return
        message.pop_first_value("Route")


def destination_of(uri: SipUri) -> NetInterface:
    """Where to send for a URI, without DNS SRV (RFC 3263 is not applied yet)."""
    transport = (
        Transport.parse(uri.transport)
        if uri.transport
        else (Transport.TLS if uri.secure else Transport.UDP)
    )
    host = uri.maddr or uri.host
    port = uri.port or (5061 if transport is Transport.TLS else 5060)
    return NetInterface(host.strip("[]"), port, transport)


def listening_point(request: MessageRequest, transport: Transport) -> NetInterface | None:
    for lp in request.listening_points:
        if lp.transport is transport:
            return lp
    return None


def record_route(request: MessageRequest, lp: NetInterface) -> str:
    host = request.external_addrs[0].split(":")[0] if request.external_addrs else lp.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    transport = "" if lp.transport is Transport.UDP else f";transport={lp.transport.value}"
    return f"<sip:{host}:{lp.port}{transport};lr>"


def decrement_max_forwards(message: Request) -> None:
    hops = message.max_forwards
    message.set("Max-Forwards", 69 if hops is None else hops - 1)


def reply(message: Request, status: int, reason: str | None = None, **kwargs: object) -> Response:
    return make_response(message, status, reason, to_tag=_tag(message), **kwargs)  # type: ignore[arg-type]


def _tag(message: Request) -> str:
    # A stable To tag per transaction keeps retransmitted answers identical.
    return format(
        abs(hash((message.call_id, message.cseq.seq, message.top_via.branch))) % 16**10, "x"
    )


def aor_of(address: NameAddr) -> str | None:
    uri = address.sip_uri
    return None if uri is None or uri.user is None else f"sip:{uri.user}@{uri.host.lower()}"
