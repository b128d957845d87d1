"""The Requester (Routr's fonoster.routr.requester.v2beta1.Requester/SendMessage): send one
SIP request and return its final response; 408 when none came (Timer F, a transport
failure, nowhere to send it).

Its SIP side is an EdgePort of its own that listens on UDP and TCP ports the system
picks: the request goes out as a client transaction (retransmitted over UDP), its
answer comes back to that port. `sipgrid serve requester` serves it on 51909; the
distributed Registry sends its REGISTERs through it.
"""

from __future__ import annotations

from typing import Any

import grpc

from sipgrid.api import convert
from sipgrid.api.types import NetInterface, Transport
from sipgrid.pb import requester_pb2, requester_pb2_grpc
from sipgrid.services.connect.probe import probe_sender
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.grpc_options import internal_channel
from sipgrid.services.settings import Settings
from sipgrid.sip import ParseError, Request, Response, make_response
from sipgrid.sip.digest import authorization_for

SERVICE = "fonoster.routr.requester.v2beta1.Requester"
DEFAULT_BIND = "0.0.0.0:51909"
TIMEOUT = 40.0  # longer than Timer F (32 s): the answer, or our 408, comes first
# A SIPMessage must carry a Via; a caller that has none yet sends this placeholder, which
# the Requester takes off (its own Via goes on, as for any request it sends).
PLACEHOLDER_BRANCH = "z9hG4bK-sg-requester"


def target_of(text: str, transport: Transport) -> NetInterface:
    """ "host:port" (or "[v6]:port", or a bare host: 5060) as an address to send to."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.endswith("]")):
        host, port = text, "5060"
    return NetInterface(host.strip("[]"), int(port), transport)


class RequesterServicer(requester_pb2_grpc.RequesterServicer):
    def __init__(self, sender: EdgePort) -> None:
        self._sender = sender

    async def SendMessage(
        self,
        request: requester_pb2.SendMessageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> requester_pb2.SendMessageResponse:
        try:
            message = convert.message_from_pb(request.message)
        except (ParseError, ValueError) as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"message: {error}")
            raise  # abort raises; this line is for the type checker
        if not isinstance(message, Request):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "message: not a request")
            raise AssertionError
        if not request.target:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "target: is required")
        if message.top_via.branch == PLACEHOLDER_BRANCH:
            message.pop_first_value("Via")
        transport = convert.transport_from_pb(request.transport)
        where = target_of(request.target, transport)
        answer = await self._sender.request(message.copy(), where)
        if answer is not None and answer.status in (401, 407) and request.username:
            # sipgrid's credentials fields: the challenge is answered here, once
            found = authorization_for(message, answer, request.username, request.password)
            if found is not None:
                again = message.copy()
                again.set("CSeq", f"{message.cseq.seq + 1} {message.method}")
                again.add(*found)
                answer = await self._sender.request(again, where)
        if answer is None:
            answer = make_response(message, 408, "Request Timeout (No Answer)")
        return requester_pb2.SendMessageResponse(message=convert.message_to_pb(answer))


async def requester_sender(
    bind_host: str = "0.0.0.0", settings: Settings | None = None
) -> EdgePort:
    """The Requester's SIP side: UDP, TCP and TLS on a port the system picks. Over TLS
    the provider's certificate is checked against REQUESTER_CA_FILE when it is set (else
    not, as with most SIP providers); its own certificate is a self-signed one made in
    the data directory, or REQUESTER_CERT_FILE and REQUESTER_KEY_FILE (mutual TLS)."""
    env = settings or Settings.load()
    security: dict[str, object] = {}
    for value, field in (
        (env.requester_ca_file, "caFile"),
        (env.requester_cert_file, "certFile"),
        (env.requester_key_file, "keyFile"),
    ):
        if value:
            security[field] = value
    return await probe_sender(f"{bind_host}:0", ("udp", "tcp", "tls"), security or None)


class GrpcRequester:
    """A client of the Requester: ``send(request, where)`` like EdgePort.request."""

    def __init__(self, addr: str, timeout: float = TIMEOUT) -> None:
        self._channel = internal_channel(addr)
        self._stub = requester_pb2_grpc.RequesterStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    async def send(
        self,
        request: Request,
        where: NetInterface,
        credentials: tuple[str, str] | None = None,
    ) -> Response | None:
        """The final answer (None: none came); with ``credentials`` (username,
        password) the Requester answers a 401/407 itself."""
        if "Via" not in request:
            request = request.copy()
            request.add("Via", f"SIP/2.0/UDP 0.0.0.0:9;branch={PLACEHOLDER_BRANCH}", first=True)
        host = f"[{where.host}]" if ":" in where.host else where.host
        try:
            reply = await self._stub.SendMessage(
                requester_pb2.SendMessageRequest(
                    target=f"{host}:{where.port}",
                    method=convert.method_to_pb(request.method),
                    transport=convert.transport_to_pb(where.transport),
                    message=convert.message_to_pb(request),
                    username=credentials[0] if credentials else "",
                    password=credentials[1] if credentials else "",
                ),
                timeout=self._timeout,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError:
            return None
        answer = convert.message_from_pb(reply.message)
        if not isinstance(answer, Response) or answer.status == 408:
            return None
        return answer

    async def close(self) -> None:
        await self._channel.close()
