"""Helpers the Connect processor shares between registrar and routing."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.sip import Request, SipUri, host_of, make_response
from sipgrid.sip.digest import mac
from sipgrid.sip.message import Response

# a browser phone's token (X-Connect-Token), which like a password never leaves sipgrid
TOKEN_HEADER: Final = "X-Connect-Token"
# what Connect takes out of an in-dialog request before it goes on: an EdgePort that
# follows a dialog by itself leaves a request that carries one of these to Connect
SECRET_HEADERS: Final = ("Authorization", "Proxy-Authorization", TOKEN_HEADER)

ALLOW: Final = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY"
)


def is_ours(uri: SipUri, request: MessageRequest) -> bool:
    """True when a URI names this EdgePort (a listening point or an external address)."""
    host = uri.host.strip("[]").lower()
    port = uri.port
    for lp in request.listening_points:
        if lp.host.strip("[]").lower() == host and (port is None or port == lp.port):
            return True
    return any(host_of(addr) == host for addr in request.external_addrs)


def pop_own_routes(message: Request, request: MessageRequest) -> list[SipUri]:
    """Remove the top Route values that point at us (loose routing, RFC 3261 section 16.4)
    and return them: their parameters carry the dialog's flows (see record_route)."""
    ours: list[SipUri] = []
    while True:
        routes = message.routes
        uri = routes[0].sip_uri if routes else None
        if uri is None or not is_ours(uri, request):
            return ours
        ours.append(uri)
        message.pop_first_value("Route")


# Record-Route parameters that let in-dialog requests follow the flows of the dialog's
# INVITE, so that a party behind NAT is reached where it really is, not at its Contact:
# the caller's From tag, where the caller sent from, and where the callee was reached.
FTAG: Final = "sg-ftag"
CALLER: Final = "sg-caller"
CALLEE: Final = "sg-callee"
# A MAC over the Call-ID and those parameters: a Route that claims to be ours but was not
# recorded by us (an invented dialog, an edited flow) is refused, so sipgrid is no open relay.
SIG: Final = "sg-sig"


# A Route to another EdgePort that holds the callee's connection (Routr's bug #287): the
# flow to use there, signed, so that only our own Connects can ask for it.
FLOW: Final = "sg-flow"


def flow_signature(key: bytes, call_id: str, flow: str) -> str:
    text = "\n".join(("flow", call_id, flow)).encode("utf-8", "surrogateescape")
    return mac(key, text, 12).hex()


def route_signature(key: bytes, call_id: str, ftag: str, caller: str, callee: str) -> str:
    text = "\n".join((call_id, ftag, caller, callee)).encode("utf-8", "surrogateescape")
    return mac(key, text, 12).hex()


def signed_flows(
    key: bytes, call_id: str, ftag: str = "", caller: str = "", callee: str = ""
) -> str:
    """The Record-Route parameters: the dialog's flows, if known, and their signature."""
    flows = ""
    if ftag:  # an empty flow (a callee located by the EdgePort) is left out: "x=" is no token
        flows = f";{FTAG}={ftag}" + "".join(
            f";{name}={value}" for name, value in ((CALLER, caller), (CALLEE, callee)) if value
        )
    return f"{flows};{SIG}={route_signature(key, call_id, ftag, caller, callee)}"


def is_recorded_by_us(key: bytes, call_id: str, uri: SipUri) -> bool:
    """True when a Route URI of ours carries a valid signature for this Call-ID."""
    sig = uri.param(SIG)
    if not sig:
        return False
    expected = route_signature(
        key, call_id, uri.param(FTAG) or "", uri.param(CALLER) or "", uri.param(CALLEE) or ""
    )
    return hmac.compare_digest(sig, expected)


def encode_net(net: NetInterface | str) -> str:
    text = str(net)  # "udp:host:port"; ':' in a parameter is fine, '~' keeps IPv6 readable
    return text.replace(":", "~")


def decode_net(value: str) -> str:
    return value.replace("~", ":")


def dialog_destination(message: Request, ours: list[SipUri]) -> NetInterface | None:
    """Where an in-dialog request goes by the flows recorded at the INVITE, if any."""
    for uri in ours:
        ftag = uri.param(FTAG)
        if not ftag:
            continue
        towards = CALLEE if message.from_.tag == ftag else CALLER
        value = uri.param(towards)
        if value:
            try:
                return NetInterface.parse(decode_net(value))
            except ValueError:
                return None
    return None


def route_stamp(uri: SipUri) -> str:
    """What makes a Route value ours for one dialog: its flows and their signature (empty
    when it has no signature). An EdgePort that routes a dialog by itself compares the
    Route of each request with the Record-Route that Connect put in (it has no key to
    check the signature with): a flow edited by a party of the dialog does not match."""
    sig = uri.param(SIG)
    if not sig:
        return ""
    return "\n".join((uri.param(FTAG) or "", uri.param(CALLER) or "", uri.param(CALLEE) or "", sig))


def follow_route_set(message: Request, ours: list[SipUri]) -> MessageResponse:
    """An in-dialog request on, once our own Routes (``ours``) are popped: to the next
    Route if any, else to the Request-URI (RFC 3261 section 16.12), sent where the dialog's
    INVITE found that party when our Record-Route says so. The rule Connect follows, and an
    EdgePort for the dialogs Connect lets it follow (MessageResponse.follow_dialog)."""
    routes = message.routes
    target = routes[0].sip_uri if routes else message.uri
    if not isinstance(target, SipUri):
        if message.method == "ACK":
            return MessageResponse(message, drop=True)
        return MessageResponse(reply(message, 416))
    decrement_max_forwards(message)
    recorded = dialog_destination(message, ours) if not routes else None
    if recorded is None:
        return MessageResponse(message)  # the EdgePort locates the Route or Request-URI
    if not recorded.transport.reliable:
        return MessageResponse(message, destination=recorded)
    # a connection: reuse it while it is open, else connect to the Request-URI
    return MessageResponse(message, target_flow=recorded)


def listening_point(request: MessageRequest, transport: Transport) -> NetInterface | None:
    for lp in request.listening_points:
        if lp.transport is transport:
            return lp
    return None


def record_route(request: MessageRequest, lp: NetInterface, flows: str = "") -> str:
    host = host_of(request.external_addrs[0]) if request.external_addrs else lp.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    transport = "" if lp.transport is Transport.UDP else f";transport={lp.transport.value}"
    return f"<sip:{host}:{lp.port}{transport};lr{flows}>"


def decrement_max_forwards(message: Request) -> None:
    hops = message.max_forwards
    message.set("Max-Forwards", 69 if hops is None else hops - 1)


def reply(
    message: Request,
    status: int,
    reason: str | None = None,
    *,
    headers: Iterable[tuple[str, object]] = (),
) -> Response:
    # the arguments spelled out: with **kwargs mypyc makes this a Python call
    return make_response(message, status, reason, to_tag=_tag(message), headers=headers)


def _tag(message: Request) -> str:
    # A stable To tag per transaction keeps retransmitted answers identical.
    # "%x" %, not format(): compiled, a C call instead of a builtin looked up and called
    return "%x" % (abs(hash((message.call_id, message.cseq.seq, message.top_via.branch))) % 16**10)
