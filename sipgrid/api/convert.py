"""Domain types <-> protobuf, at the edge of a gRPC hop (never on the all-in-one path).

A SIP message travels whole in SIPMessage.raw (a sipgrid field), so nothing is lost;
on a unary call Routr's typed fields are filled too, for processors written for Routr
to read (sipgrid's own stream, proto/stream.proto, carries ``raw`` alone). A
processor written with Routr's library answers without raw bytes: the message is then
rebuilt from its typed fields and the request it answers (``message_from_pb``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, MutableMapping
from typing import Final

from sipgrid.pb import common_pb2, location_pb2, processor_pb2, sipmessage_pb2
from sipgrid.sip import (
    NameAddr,
    ParseError,
    Request,
    Response,
    SipUri,
    make_response,
    parse,
    parse_uri,
    stable_tag,
)

from .types import (
    META_ALTERNATIVES,
    META_CREDENTIALS,
    META_DESTINATION,
    META_DROP,
    META_FOLLOW_DIALOG,
    META_FORKS,
    META_TARGET_FLOW,
    Fork,
    MessageRequest,
    MessageResponse,
    NetInterface,
    Route,
    Transport,
)

_TRANSPORTS: Final = {
    Transport.UDP: common_pb2.UDP,
    Transport.TCP: common_pb2.TCP,
    Transport.TLS: common_pb2.TLS,
    Transport.SCTP: common_pb2.SCTP,
    Transport.WS: common_pb2.WS,
    Transport.WSS: common_pb2.WSS,
}
_TRANSPORTS_BACK: Final = {v: k for k, v in _TRANSPORTS.items()}


def transport_to_pb(transport: Transport) -> common_pb2.Transport.ValueType:
    return _TRANSPORTS[transport]


def transport_from_pb(value: common_pb2.Transport.ValueType) -> Transport:
    return _TRANSPORTS_BACK.get(value, Transport.UDP)


_METHODS: Final = dict(processor_pb2.Method.items())


def method_to_pb(method: str) -> processor_pb2.Method.ValueType:
    """Routr's processor Method enum (UNKNOWN for a method it does not name)."""
    return _METHODS.get(method, processor_pb2.UNKNOWN)


def net_to_pb(net: NetInterface) -> processor_pb2.NetInterface:
    return processor_pb2.NetInterface(
        host=net.host, port=net.port, transport=_TRANSPORTS[net.transport]
    )


def _net_into(net: NetInterface, out: processor_pb2.NetInterface) -> None:
    out.host = net.host
    out.port = net.port
    out.transport = _TRANSPORTS[net.transport]


def map_to_dict(pb_map: Mapping[str, str]) -> dict[str, str]:
    """A protobuf map field as a dict. ``dict(map)`` reads it through
    ``collections.abc.Mapping``'s Python code (its keys, then each value): a third of
    the cost by a comprehension, and an empty map is tested first."""
    return {k: pb_map[k] for k in pb_map} if pb_map else {}


def map_into(source: Mapping[str, str], target: MutableMapping[str, str]) -> None:
    """``target.update(source)`` for a protobuf map field, whose ``update`` is
    ``collections.abc``'s Python code: an item at a time instead."""
    for key, value in source.items():
        target[key] = value


def net_from_pb(pb: processor_pb2.NetInterface) -> NetInterface:
    return NetInterface(pb.host, pb.port, _TRANSPORTS_BACK.get(pb.transport, Transport.UDP))


def _uri_to_pb(uri: object, out: sipmessage_pb2.SipURI) -> None:
    if isinstance(uri, SipUri):
        out.user = uri.user or ""
        out.host = uri.host
        out.port = uri.port or 0
        out.transport_param = uri.transport or ""
        out.lr_param = uri.lr
        out.secure = uri.secure
        out.m_addr_param = uri.maddr or ""
        out.user_param = uri.user_param or ""


def _address_to_pb(value: NameAddr, out: sipmessage_pb2.Address) -> None:
    _uri_to_pb(value.uri, out.uri)
    out.display_name = value.display_name or ""
    out.wildcard = value.wildcard


def message_to_pb(message: Request | Response, typed: bool = True) -> sipmessage_pb2.SIPMessage:
    """The message as protobuf: its bytes in ``raw`` and, unless ``typed`` is false (on
    sipgrid's own stream, where nothing reads them), Routr's typed fields too."""
    pb = sipmessage_pb2.SIPMessage()
    _message_into(message, pb, typed)
    return pb


def _message_into(message: Request | Response, pb: sipmessage_pb2.SIPMessage, typed: bool) -> None:
    pb.raw = message.serialize()
    if typed:
        _fill_typed(message, pb)
    elif isinstance(message, Request):  # what the Dispatcher routes on, read without parsing
        pb.method = message.method
    else:
        pb.status_code = message.status
        pb.cseq.method = message.cseq.method


def add_typed_fields(pb: sipmessage_pb2.SIPMessage) -> None:
    """Routr's typed fields for a message that came off the stream with ``raw`` alone,
    before it goes on in a unary call (a processor written for Routr reads them)."""
    if pb.raw and not pb.call_id.call_id:
        _fill_typed(parse(pb.raw), pb)


def _fill_typed(message: Request | Response, pb: sipmessage_pb2.SIPMessage) -> None:
    if isinstance(message, Request):
        _uri_to_pb(message.uri, pb.request_uri)
        pb.method = message.method
    else:
        pb.status_code = message.status
        pb.reason_phrase = message.reason
    _address_to_pb(message.from_, getattr(pb, "from").address)
    getattr(pb, "from").tag = message.from_.tag or ""
    _address_to_pb(message.to, pb.to.address)
    pb.to.tag = message.to.tag or ""
    pb.call_id.call_id = message.call_id
    pb.cseq.seq = message.cseq.seq
    pb.cseq.method = message.cseq.method
    if message.max_forwards is not None:
        pb.max_forwards.max_forwards = message.max_forwards
    via = message.top_via
    pb.via.add(
        host=via.host,
        port=via.port or 0,
        branch=via.branch or "",
        transport=via.transport,
        received=via.received or "",
        r_port=via.rport or 0,
        r_port_flag=via.wants_rport,
    )
    _typed_extras(message, pb)
    for name, value in message.headers():
        pb.extensions.add(name=name, value=value)
    pb.body = message.body.decode("utf-8", "replace")
    pb.content_length.content_length = len(message.body)


# Routr's ResponseType names and the status each stands for
RESPONSE_CODES: Final = {
    "TRYING": 100, "RINGING": 180, "CALL_IS_BEING_FORWARDED": 181, "QUEUED": 182,
    "SESSION_PROGRESS": 183, "SUCCESS": 200, "OK": 200, "ACCEPTED": 202, "REDIRECTION": 300,
    "MULTIPLE_CHOICES": 300, "MOVED_PERMANENTLY": 301, "MOVED_TEMPORARILY": 302,
    "USE_PROXY": 305, "ALTERNATIVE_SERVICE": 380, "CLIENT_ERROR": 400, "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401, "PAYMENT_REQUIRED": 402, "FORBIDDEN": 403, "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405, "NOT_ACCEPTABLE": 406, "PROXY_AUTHENTICATION_REQUIRED": 407,
    "REQUEST_TIMEOUT": 408, "GONE": 410, "REQUEST_ENTITY_TOO_LARGE": 413,
    "REQUEST_URI_TOO_LONG": 414, "UNSUPPORTED_MEDIA_TYPE": 415, "UNSUPPORTED_URI_SCHEME": 416,
    "BAD_EXTENSION": 420, "EXTENSION_REQUIRED": 421, "INTERVAL_TOO_BRIEF": 423,
    "TEMPORARILY_UNAVAILABLE": 480, "CALL_OR_TRANSACTION_DOES_NOT_EXIST": 481,
    "LOOP_DETECTED": 482, "TOO_MANY_HOPS": 483, "ADDRESS_INCOMPLETE": 484, "AMBIGUOUS": 485,
    "BUSY_HERE": 486, "REQUEST_TERMINATED": 487, "NOT_ACCEPTABLE_HERE": 488, "BAD_EVENT": 489,
    "REQUEST_PENDING": 491, "UNDECIPHERABLE": 493, "SERVER_ERROR": 500,
    "SERVER_INTERNAL_ERROR": 500, "NOT_IMPLEMENTED": 501, "BAD_GATEWAY": 502,
    "SERVICE_UNAVAILABLE": 503, "SERVER_TIMEOUT": 504, "VERSION_NOT_SUPPORTED": 505,
    "MESSAGE_TOO_LARGE": 513, "GLOBAL_ERROR": 600, "BUSY_EVERYWHERE": 600, "DECLINE": 603,
    "DOES_NOT_EXIST_ANYWHERE": 604, "SESSION_NOT_ACCEPTABLE": 606,
}  # fmt: skip


def _typed_extras(message: Request | Response, pb: sipmessage_pb2.SIPMessage) -> None:
    """The typed fields a processor written for Routr reads when they are there:
    the credentials (Routr's Auth helpers), the Contacts and Expires (a registrar)."""
    try:
        if "Contact" in message:
            contacts = message.contacts
            for contact in contacts:
                item = pb.contacts.add(expires=contact.expires or 0)
                _address_to_pb(contact, item.address)
            if contacts:
                pb.contact.CopyFrom(pb.contacts[0])
        if "Expires" in message and message.expires is not None:
            pb.expires.expires = message.expires
        found = (
            message.authorizations
            if "Authorization" in message
            else message.proxy_authorizations
            if "Proxy-Authorization" in message
            else []
        )
    except ParseError:
        return  # a malformed header stays in extensions, as it came
    if found and isinstance(message, Request):
        c = found[0]
        pb.authorization.CopyFrom(
            sipmessage_pb2.Authorization(
                realm=c.realm,
                scheme=c.scheme,
                c_nonce=c.cnonce or "",
                nonce=c.nonce,
                algorithm=c.algorithm,
                qop=c.qop or "",
                opaque=c.opaque or "",
                response=c.response,
                username=c.username,
                uri=c.uri,
                method=message.method,
                nonce_count=_hex(c.nc),
            )
        )


def _hex(text: str | None) -> int:
    try:
        return int(text, 16) if text else 0
    except ValueError:
        return 0


def message_from_pb(
    pb: sipmessage_pb2.SIPMessage, original: Request | Response | None = None
) -> Request | Response:
    """The message: its raw bytes, else rebuilt from Routr's typed fields and the message
    it answers (``original``). A ValueError says what is missing."""
    if pb.raw:
        return parse(pb.raw)
    if original is None:
        raise ValueError("message: no raw bytes and no message to build it from")
    return _from_typed(pb, original)


def _from_typed(pb: sipmessage_pb2.SIPMessage, original: Request | Response) -> Request | Response:
    """What Routr's processor library sends: a response made from the request
    (``responseType``, ``reasonPhrase``, extra headers in ``extensions``), or the request
    itself as it came, perhaps with headers added or removed and a new Request-URI.
    Every header travels in ``extensions`` (sipgrid fills them all); a message whose
    extensions lack a Via gets the original's headers, with the extensions added."""
    headers = [(e.name, e.value) for e in pb.extensions]
    complete = any(name.lower() in ("via", "v") for name, _ in headers)
    body = pb.body.encode()
    if pb.WhichOneof("message_type") == "response_type" or pb.status_code:
        name = sipmessage_pb2.ResponseType.Name(pb.response_type)
        status = pb.status_code or RESPONSE_CODES.get(name, 0)
        if not status:
            raise ValueError("message: a response without a status (responseType UNKNOWN)")
        if complete:
            return _parse_built(f"SIP/2.0 {status} {pb.reason_phrase or 'Unknown'}", headers, body)
        if not isinstance(original, Request):
            raise ValueError("message: a response made from a response")
        tag = stable_tag(original) if status > 100 and original.to.tag is None else None
        response = make_response(original, status, pb.reason_phrase or None, to_tag=tag)
        for header, value in headers:
            if header.lower() not in ("content-length", "l"):
                response.add(header, value)
        if body:
            response.set_body(body)
        return response
    if not isinstance(original, Request):
        raise ValueError("message: a request in answer to a response")
    uri = original.uri
    if pb.HasField("request_uri"):
        sent = sipmessage_pb2.SipURI()
        _uri_to_pb(uri, sent)
        if pb.request_uri != sent:  # the processor moved it
            uri = parse_uri(_typed_uri(pb.request_uri), what="requestUri")
    method = pb.method or original.method
    if complete:
        return _parse_built(f"{method} {uri} SIP/2.0", headers, body if pb.body else original.body)
    request = original.copy()
    request.set_uri(uri)
    for header, value in headers:
        request.add(header, value)
    return request


def _typed_uri(pb: sipmessage_pb2.SipURI) -> str:
    scheme = "sips" if pb.secure else "sip"
    user = f"{pb.user}@" if pb.user else ""
    port = f":{pb.port}" if pb.port else ""
    params = "".join(
        f";{name}={value}"
        for name, value in (
            ("transport", pb.transport_param),
            ("maddr", pb.m_addr_param),
            ("user", pb.user_param),
        )
        if value
    )
    return f"{scheme}:{user}{pb.host}{port}{params}{';lr' if pb.lr_param else ''}"


def _parse_built(
    first_line: str, headers: list[tuple[str, str]], body: bytes
) -> Request | Response:
    lines = [
        first_line,
        *(f"{n}: {v}" for n, v in headers if n.lower() not in ("content-length", "l")),
    ]
    lines.append(f"Content-Length: {len(body)}")
    try:
        return parse("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
    except ParseError as error:
        raise ValueError(f"message: rebuilt from its typed fields: {error.reason}") from None


def request_to_pb(request: MessageRequest, typed: bool = True) -> processor_pb2.MessageRequest:
    pb = processor_pb2.MessageRequest()
    request_into_pb(request, pb, typed)
    return pb


def request_into_pb(
    request: MessageRequest, pb: processor_pb2.MessageRequest, typed: bool = True
) -> None:
    """``request`` written into ``pb``, an empty message (a stream call's own, say):
    filled in place, as a message given to a constructor or to a field of another is
    copied whole, and an empty map given to it costs as much as a full one."""
    pb.ref = request.ref
    pb.edge_port_ref = request.edge_port_ref
    pb.method = method_to_pb(request.method)
    _net_into(request.sender, pb.sender)
    pb.listening_points.extend(_listening_points_pb(tuple(request.listening_points)))
    if request.external_addrs:
        pb.external_addrs.extend(request.external_addrs)
    if request.localnets:
        pb.localnets.extend(request.localnets)
    _message_into(request.message, pb.message, typed)
    if request.metadata:
        map_into(request.metadata, pb.metadata)


@functools.lru_cache(maxsize=16)
def _listening_points_pb(points: tuple[NetInterface, ...]) -> list[processor_pb2.NetInterface]:
    """An EdgePort sends the same listening points with every message."""
    return [net_to_pb(lp) for lp in points]


def request_from_pb(pb: processor_pb2.MessageRequest) -> MessageRequest:
    message = message_from_pb(pb.message)
    method = message.method if isinstance(message, Request) else message.cseq.method
    return MessageRequest(
        ref=pb.ref,
        edge_port_ref=pb.edge_port_ref,
        method=method,
        sender=net_from_pb(pb.sender),
        listening_points=[net_from_pb(lp) for lp in pb.listening_points],
        message=message,
        external_addrs=list(pb.external_addrs),
        localnets=list(pb.localnets),
        metadata=map_to_dict(pb.metadata),
    )


def response_to_pb(response: MessageResponse, typed: bool = True) -> processor_pb2.MessageResponse:
    pb = processor_pb2.MessageResponse()
    response_into_pb(response, pb, typed)
    return pb


def response_into_pb(
    response: MessageResponse, pb: processor_pb2.MessageResponse, typed: bool = True
) -> None:
    """``response`` written into ``pb``, an empty message (as ``request_into_pb``)."""
    metadata = dict(response.metadata)
    if response.destination is not None:
        metadata[META_DESTINATION] = str(response.destination)
    if response.target_flow is not None:
        metadata[META_TARGET_FLOW] = str(response.target_flow)
    if response.drop:
        metadata[META_DROP] = "1"
    if response.alternatives:
        metadata[META_ALTERNATIVES] = "\n".join(response.alternatives)
    if response.credentials is not None:
        metadata[META_CREDENTIALS] = "\n".join(response.credentials)
    if response.follow_dialog:
        metadata[META_FOLLOW_DIALOG] = "1"
    if response.forks:
        metadata[META_FORKS] = "\n".join(
            json.dumps(
                [
                    f.uri,
                    str(f.destination) if f.destination else "",
                    str(f.target_flow) if f.target_flow else "",
                    list(f.record_route),
                ]
            )
            for f in response.forks
        )
    _message_into(response.message, pb.message, typed)
    if metadata:
        map_into(metadata, pb.metadata)


def _fork(line: str) -> Fork:
    """A branch from its metadata line; a bad one is a ValueError naming it."""
    try:
        uri, destination, flow, record_route = json.loads(line)
    except (ValueError, TypeError):
        raise ValueError(f"not a fork: {line!r}") from None
    return Fork(
        str(uri),
        NetInterface.parse(destination) if destination else None,
        NetInterface.parse(flow) if flow else None,
        tuple(str(r) for r in record_route),
    )


def response_from_pb(
    pb: processor_pb2.MessageResponse, original: Request | Response | None = None
) -> MessageResponse:
    """Routr's string metadata to typed fields; a bad address is a ValueError naming it.
    ``original``: the message the processor was given (a Routr processor's answer is
    rebuilt from it)."""
    metadata = map_to_dict(pb.metadata)
    destination = metadata.pop(META_DESTINATION, "")
    target_flow = metadata.pop(META_TARGET_FLOW, "")
    username, _, password = metadata.pop(META_CREDENTIALS, "").partition("\n")
    return MessageResponse(
        message_from_pb(pb.message, original),
        metadata,
        destination=NetInterface.parse(destination) if destination else None,
        target_flow=NetInterface.parse(target_flow) if target_flow else None,
        drop=metadata.pop(META_DROP, "") == "1",
        alternatives=[a for a in metadata.pop(META_ALTERNATIVES, "").split("\n") if a],
        credentials=(username, password) if username else None,
        forks=[_fork(line) for line in metadata.pop(META_FORKS, "").split("\n") if line],
        follow_dialog=metadata.pop(META_FOLLOW_DIALOG, "") == "1",
    )


def route_to_pb(route: Route) -> location_pb2.Route:
    pb = location_pb2.Route()
    route_into_pb(route, pb)
    return pb


def route_into_pb(route: Route, pb: location_pb2.Route) -> None:
    """``route`` written into ``pb``, an empty message (as ``request_into_pb``)."""
    pb.user = route.user
    pb.host = route.host
    pb.port = str(route.port)
    pb.advertised_host = route.advertised_host
    pb.advertised_port = str(route.advertised_port)
    pb.transport = _TRANSPORTS[route.transport]
    pb.registered_on = int(route.registered_on * 1000)
    pb.expires = route.expires
    pb.session_count = route.session_count
    pb.edge_port_ref = route.edge_port_ref
    for lp in route.listening_points:
        _net_into(lp, pb.listening_points.add())
    if route.localnets:
        pb.localnets.extend(route.localnets)
    if route.external_addrs:
        pb.external_addrs.extend(route.external_addrs)
    if route.labels:
        map_into(route.labels, pb.labels)
    pb.contact_uri = route.contact_uri
    pb.flow = route.flow


def routes_into_pb(routes: list[Route], pb: location_pb2.FindRoutesResponse) -> None:
    for route in routes:
        route_into_pb(route, pb.routes.add())


def route_from_pb(pb: location_pb2.Route) -> Route:
    return Route(
        user=pb.user,
        host=pb.host,
        port=int(pb.port or 0),
        transport=_TRANSPORTS_BACK.get(pb.transport, Transport.UDP),
        advertised_host=pb.advertised_host,
        advertised_port=int(pb.advertised_port or 0),
        registered_on=pb.registered_on / 1000.0,
        expires=pb.expires,
        session_count=pb.session_count,
        edge_port_ref=pb.edge_port_ref,
        listening_points=[net_from_pb(lp) for lp in pb.listening_points],
        localnets=list(pb.localnets),
        external_addrs=list(pb.external_addrs),
        labels=map_to_dict(pb.labels),
        contact_uri=pb.contact_uri,
        flow=pb.flow,
    )


def route_to_bytes(route: Route) -> bytes:
    """A route as stored outside the process (Redis, the database): Routr's protobuf."""
    return route_to_pb(route).SerializeToString()


def route_from_bytes(data: bytes) -> Route:
    pb = location_pb2.Route()
    pb.ParseFromString(data)
    return route_from_pb(pb)
