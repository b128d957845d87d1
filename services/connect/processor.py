"""The Connect processor: registrar, authentication, access control and routing
between agents of a domain (Routr's Connect processor, first part)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sipgrid.api.types import (
    LocationService,
    MessageRequest,
    MessageResponse,
    NetInterface,
    Route,
)
from sipgrid.sip import ParseError, Request, SipUri, parse_uri

from .auth import Authenticator, Verdict
from .context import (
    ALLOW,
    decrement_max_forwards,
    dialog_destination,
    encode_net,
    is_ours,
    is_recorded_by_us,
    listening_point,
    pop_own_routes,
    record_route,
    reply,
    signed_flows,
)
from .guard import Guard
from .registrar import Registrar
from .resources import Resources

# Methods that start a dialog or stand alone, routed from agent to agent.
ROUTED = frozenset(
    {"INVITE", "MESSAGE", "OPTIONS", "SUBSCRIBE", "REFER", "NOTIFY", "PUBLISH", "INFO", "UPDATE"}
)


class ConnectProcessor:
    # Responses pass through unchanged: an EdgePort calling in process may skip that call.
    handles_responses = False

    def __init__(
        self,
        resources: Resources | Callable[[], Resources],
        location: LocationService,
        auth: Authenticator | None = None,
        clock: Callable[[], float] = time.time,
        guard: Guard | None = None,
    ) -> None:
        self._resources = resources if callable(resources) else (lambda: resources)
        self._location = location
        self._auth = auth or Authenticator(clock=clock)
        self.guard = guard or Guard(clock=clock)
        self._registrar = Registrar(self._resources, location, self._auth, clock, self.guard)
        self._route_key = self._auth.key

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        if not isinstance(message, Request):
            return MessageResponse(message)  # responses pass through unchanged
        try:
            return await self._request(request, message)
        except ParseError as error:
            return MessageResponse(reply(message, error.status, error.reason))

    async def _request(self, request: MessageRequest, message: Request) -> MessageResponse:
        if self.guard.banned(request.sender.host):
            if message.method == "ACK":
                return MessageResponse(message, drop=True)
            return MessageResponse(reply(message, 403, "Forbidden (Banned)"))
        method = message.method
        if method == "REGISTER":
            return MessageResponse(await self._registrar.register(request))
        ours = pop_own_routes(message, request)
        if self._for_us(request, message):
            return MessageResponse(
                reply(message, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
            )
        if message.to.tag is not None or method == "ACK":
            return self._in_dialog(message, ours)
        if method in ROUTED:
            if message.max_forwards == 0:
                return MessageResponse(reply(message, 483))
            return await self._route_to_agent(request, message)
        if method in ("BYE", "PRACK"):
            return MessageResponse(reply(message, 481))
        return MessageResponse(reply(message, 501, headers=[("Allow", ALLOW)]))

    @staticmethod
    def _for_us(request: MessageRequest, message: Request) -> bool:
        """An OPTIONS addressed to sipgrid itself (a keep-alive), with no Route beyond us."""
        uri = message.uri
        return (
            message.method == "OPTIONS"
            and isinstance(uri, SipUri)
            and (uri.user is None or is_ours(uri, request))
            and not message.routes
        )

    def _in_dialog(self, message: Request, ours: list[SipUri]) -> MessageResponse:
        """Follow the route set: the next Route if any, else the Request-URI (RFC 3261 16.12),
        sent where the dialog's INVITE found that party when our Record-Route says so.

        Only a dialog that sipgrid record-routed is followed: the top Route must be a
        Record-Route value we signed for this Call-ID (RFC 3261 sections 16.4 and 16.12).
        Anything else (an invented To tag, a Route forged with our address) is refused,
        so that sipgrid never relays for strangers.
        """
        if not ours or not is_recorded_by_us(self._route_key, message.call_id, ours[0]):
            if message.method == "ACK":
                return MessageResponse(message, drop=True)
            return MessageResponse(reply(message, 403, "Forbidden (Not A Dialog Of Ours)"))
        resources = self._resources()
        _strip_credentials(message, lambda realm: resources.domain(realm) is not None)
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

    async def _route_to_agent(self, request: MessageRequest, message: Request) -> MessageResponse:
        resources = self._resources()
        uri = message.uri
        caller = message.from_.sip_uri
        domain = resources.domain(caller.host) if caller is not None else None
        if domain is None or caller is None:
            return MessageResponse(reply(message, 403, "Forbidden (Caller Not In A Domain)"))
        if domain.acl is not None and not domain.acl.permits(request.sender.host):
            return MessageResponse(reply(message, 403, "Forbidden By Access Control List"))

        verdict, username = await self._auth.check(
            message.method,
            message.proxy_authorizations,
            domain.domain_uri,
            lambda username: resources.password_for(domain.domain_uri, username),
        )
        if verdict in (Verdict.CHALLENGE, Verdict.STALE):
            challenge = self._auth.challenge(domain.domain_uri, stale=verdict is Verdict.STALE)
            return MessageResponse(
                reply(message, 407, headers=[("Proxy-Authenticate", str(challenge))])
            )
        if verdict is Verdict.FORBIDDEN:
            await self.guard.failed(request.sender.host, username)
        caller_agent = resources.agent(domain.domain_uri, caller.user or "")
        if (
            verdict is Verdict.FORBIDDEN
            or caller_agent is None
            or caller_agent.credentials is None
            or caller_agent.credentials.username != username
        ):
            return MessageResponse(reply(message, 403, "Forbidden (Bad Credentials)"))

        if not isinstance(uri, SipUri) or uri.user is None:
            return MessageResponse(reply(message, 404))
        callee_domain = resources.domain(uri.host)
        if callee_domain is None or callee_domain.ref != domain.ref:
            return MessageResponse(reply(message, 403, "Forbidden (Callee Outside The Domain)"))
        callee = resources.agent(domain.domain_uri, uri.user)
        if callee is None or not callee.enabled:
            return MessageResponse(reply(message, 404))
        aor = f"sip:{uri.user}@{domain.domain_uri.lower()}"
        routes = await self._location.find_routes(aor, message.call_id)
        if not routes:
            return MessageResponse(reply(message, 480))
        route = routes[0]
        self._forward(request, message, route, domain.domain_uri)
        return MessageResponse(
            message,
            destination=route.destination,
            target_flow=NetInterface.parse(route.flow) if route.flow else None,
        )

    def _forward(self, request: MessageRequest, message: Request, route: Route, realm: str) -> None:
        """Retarget to the binding, spend a hop, drop our credentials, record-route.

        When the inbound and outbound interfaces differ, two Record-Route values go in,
        the one facing the callee on top (RFC 3261 section 16.6 step 4, RFC 5658).
        """
        message.set_uri(parse_uri(route.contact_uri, what="Contact"))
        decrement_max_forwards(message)
        _strip_credentials(message, lambda other: other == realm)
        if message.method in ("INVITE", "SUBSCRIBE", "REFER"):
            inbound = listening_point(request, request.sender.transport)
            outbound = listening_point(request, route.transport)
            flows = signed_flows(self._route_key, message.call_id)
            if message.from_.tag and _is_token(message.from_.tag):
                caller = str(request.sender)
                callee = route.flow or str(route.destination)
                flows = signed_flows(
                    self._route_key,
                    message.call_id,
                    message.from_.tag,
                    encode_net(caller),
                    encode_net(callee),
                )
            if inbound is not None:
                message.add("Record-Route", record_route(request, inbound, flows), first=True)
            if outbound is not None and outbound != inbound:
                message.add("Record-Route", record_route(request, outbound, flows), first=True)


def _strip_credentials(message: Request, ours: Callable[[str], bool]) -> None:
    """Credentials addressed to sipgrid (a realm it serves) never leave it."""
    if "Proxy-Authorization" not in message:
        return
    theirs = [c for c in message.proxy_authorizations if not ours(c.realm)]
    if len(theirs) != len(message.get_all("Proxy-Authorization")):
        message.remove("Proxy-Authorization")
        for credentials in theirs:
            message.add("Proxy-Authorization", str(credentials))


def _is_token(text: str) -> bool:
    """A tag that can go into a URI parameter as it is."""
    return all(c.isalnum() or c in "-_.!~*'()" for c in text)
