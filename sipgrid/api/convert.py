"""Domain types <-> protobuf, at the edge of a gRPC hop (never on the all-in-one path).

A SIP message travels whole in SIPMessage.raw (a sipgrid field), so nothing is lost;
Routr's typed fields are filled too, for processors written for Routr to read.
A message that arrives without raw bytes (from a Routr processor) is refused for now.
"""

from __future__ import annotations

import json

from sipgrid.pb import common_pb2, location_pb2, processor_pb2, sipmessage_pb2
from sipgrid.sip import NameAddr, Request, Response, SipUri, parse

from .types import (
    META_ALTERNATIVES,
    META_CREDENTIALS,
    META_DESTINATION,
    META_DROP,
    META_FORKS,
    META_TARGET_FLOW,
    Fork,
    MessageRequest,
    MessageResponse,
    NetInterface,
    Route,
    Transport,
)

_TRANSPORTS = {
    Transport.UDP: common_pb2.UDP,
    Transport.TCP: common_pb2.TCP,
    Transport.TLS: common_pb2.TLS,
    Transport.SCTP: common_pb2.SCTP,
    Transport.WS: common_pb2.WS,
    Transport.WSS: common_pb2.WSS,
}
_TRANSPORTS_BACK = {v: k for k, v in _TRANSPORTS.items()}


def transport_to_pb(transport: Transport) -> common_pb2.Transport.ValueType:
    return _TRANSPORTS[transport]


def transport_from_pb(value: common_pb2.Transport.ValueType) -> Transport:
    return _TRANSPORTS_BACK.get(value, Transport.UDP)


def method_to_pb(method: str) -> processor_pb2.Method.ValueType:
    """Routr's processor Method enum (UNKNOWN for a method it does not name)."""
    names = processor_pb2.Method.keys()
    return processor_pb2.Method.Value(method) if method in names else processor_pb2.UNKNOWN


def net_to_pb(net: NetInterface) -> processor_pb2.NetInterface:
    return processor_pb2.NetInterface(
        host=net.host, port=net.port, transport=_TRANSPORTS[net.transport]
    )


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


def message_to_pb(message: Request | Response) -> sipmessage_pb2.SIPMessage:
    pb = sipmessage_pb2.SIPMessage(raw=message.serialize())
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
    for name, value in message.headers():
        pb.extensions.add(name=name, value=value)
    pb.body = message.body.decode("utf-8", "replace")
    pb.content_length.content_length = len(message.body)
    return pb


def message_from_pb(pb: sipmessage_pb2.SIPMessage) -> Request | Response:
    if not pb.raw:
        raise ValueError("SIPMessage without raw bytes: typed-only messages are not supported yet")
    return parse(pb.raw)


def request_to_pb(request: MessageRequest) -> processor_pb2.MessageRequest:
    methods = processor_pb2.Method.keys()
    method = (
        processor_pb2.Method.Value(request.method)
        if request.method in methods
        else processor_pb2.UNKNOWN
    )
    return processor_pb2.MessageRequest(
        ref=request.ref,
        edge_port_ref=request.edge_port_ref,
        method=method,
        sender=net_to_pb(request.sender),
        listening_points=[net_to_pb(lp) for lp in request.listening_points],
        external_addrs=request.external_addrs,
        localnets=request.localnets,
        message=message_to_pb(request.message),
        metadata=request.metadata,
    )


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
        metadata=dict(pb.metadata),
    )


def response_to_pb(response: MessageResponse) -> processor_pb2.MessageResponse:
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
    return processor_pb2.MessageResponse(message=message_to_pb(response.message), metadata=metadata)


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


def response_from_pb(pb: processor_pb2.MessageResponse) -> MessageResponse:
    """Routr's string metadata to typed fields; a bad address is a ValueError naming it."""
    metadata = dict(pb.metadata)
    destination = metadata.pop(META_DESTINATION, "")
    target_flow = metadata.pop(META_TARGET_FLOW, "")
    username, _, password = metadata.pop(META_CREDENTIALS, "").partition("\n")
    return MessageResponse(
        message_from_pb(pb.message),
        metadata,
        destination=NetInterface.parse(destination) if destination else None,
        target_flow=NetInterface.parse(target_flow) if target_flow else None,
        drop=metadata.pop(META_DROP, "") == "1",
        alternatives=[a for a in metadata.pop(META_ALTERNATIVES, "").split("\n") if a],
        credentials=(username, password) if username else None,
        forks=[_fork(line) for line in metadata.pop(META_FORKS, "").split("\n") if line],
    )


def route_to_pb(route: Route) -> location_pb2.Route:
    return location_pb2.Route(
        user=route.user,
        host=route.host,
        port=str(route.port),
        advertised_host=route.advertised_host,
        advertised_port=str(route.advertised_port),
        transport=_TRANSPORTS[route.transport],
        registered_on=int(route.registered_on * 1000),
        expires=route.expires,
        session_count=route.session_count,
        edge_port_ref=route.edge_port_ref,
        listening_points=[net_to_pb(lp) for lp in route.listening_points],
        localnets=route.localnets,
        external_addrs=route.external_addrs,
        labels=route.labels,
        contact_uri=route.contact_uri,
        flow=route.flow,
    )


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
        labels=dict(pb.labels),
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
