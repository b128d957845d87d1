"""The Connect processor: registrar, authentication, access control and routing
between agents of a domain (Routr's Connect processor, first part)."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
from collections.abc import Callable
from typing import Final

from sipgrid.api.types import (
    Fork,
    LocationService,
    MessageRequest,
    MessageResponse,
    NetInterface,
    Route,
    Transport,
)
from sipgrid.sip import ParseError, Request, SipUri, parse_uri

from .auth import Authenticator, Verdict
from .context import (
    ALLOW,
    FLOW,
    SIG,
    TOKEN_HEADER,
    decode_net,
    decrement_max_forwards,
    encode_net,
    flow_signature,
    follow_route_set,
    is_ours,
    is_recorded_by_us,
    listening_point,
    pop_own_routes,
    record_route,
    reply,
    signed_flows,
)
from .guard import Guard
from .index import Agent, Credentials, Number, Peer, Resources, Trunk, aor_key
from .probe import PeerProber, contact_of
from .registrar import Registrar
from .routing import (
    DOD_NUMBER,
    DOD_PRIVACY,
    Balancer,
    identity_headers,
    trunk_targets,
    wants_privacy,
)
from .tokens import Claims, TokenError, TokenVerifier

log: Final = logging.getLogger("sipgrid.connect")

# Methods that start a dialog or stand alone, routed from agent to agent.
ROUTED: Final = frozenset(
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
        balancer: Balancer | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.resources = resources if callable(resources) else (lambda: resources)
        self._location = location
        self._auth = auth or Authenticator(clock=clock)
        self.guard = guard or Guard(clock=clock)
        self.tokens = tokens  # X-Connect-Token (browser phones); None: tokens refused
        self._registrar = Registrar(self.resources, location, self._auth, clock, self.guard, tokens)
        self._route_key = self._auth.key
        self._balancer = balancer or Balancer()
        # static peers' health (set by the wiring that can send requests: the all-in-one)
        self.prober: PeerProber | None = None

    @staticmethod
    def untouched_route(method: str) -> str | None:
        """Every request reaches Connect itself untouched: an EdgePort calling it in process
        may follow the dialogs it lets it follow (MessageResponse.follow_dialog)."""
        return "connect"

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
        if ours and ours[0].param(FLOW) and message.to.tag is None and method != "ACK":
            return self._to_flow(request, message, ours[0])
        if self._for_us(request, message):
            return MessageResponse(
                reply(message, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
            )
        if message.to.tag is not None or method == "ACK":
            return self._in_dialog(message, ours)
        if method in ROUTED:
            if message.max_forwards == 0:
                return MessageResponse(reply(message, 483))
            routed = await self._route(request, message)
            if method == "INVITE" and isinstance(routed.message, Request) and not routed.forks:
                # its dialog's requests need nothing of ours but _in_dialog's routing
                routed.follow_dialog = True
            return routed
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
        resources = self.resources()
        _strip_credentials(message, lambda realm: _is_our_realm(resources, realm))
        message.remove(TOKEN_HEADER)
        return follow_route_set(message, ours)

    # -- new requests: who calls, and where to

    async def _route(self, request: MessageRequest, message: Request) -> MessageResponse:
        """Route a request that starts a dialog or stands alone, in every direction Routr's
        Connect knows: agent to agent (across domains served here), agent to peer, peer to
        agent, agent or peer to the PSTN through a trunk, and from the PSTN to a Number's
        agent or peer."""
        resources = self.resources()
        caller = await self._caller(request, message, resources)
        if isinstance(caller, MessageResponse):
            return caller
        _strip_credentials(message, lambda realm: _is_our_realm(resources, realm))
        message.remove(TOKEN_HEADER)  # a token, like a password, never leaves sipgrid
        if isinstance(caller, Trunk):
            return await self._from_pstn(request, message, caller, resources)
        if isinstance(caller, Claims):
            return await self._from_token(request, message, caller, resources)
        uri = message.uri
        if not isinstance(uri, SipUri) or uri.user is None:
            return MessageResponse(reply(message, 404))
        callee_domain = resources.domain(uri.host)
        if callee_domain is not None:
            callee = resources.agent(callee_domain.domain_uri, uri.user)
            if callee is not None:
                if not callee.enabled:
                    return MessageResponse(reply(message, 404))
                return await self._to_agent(request, message, callee)
            # a browser phone registered with a token has an AOR but no Agent resource
            aor = f"sip:{uri.user}@{callee_domain.domain_uri.lower()}"
            routes = await self._location.find_routes(aor, message.call_id)
            if routes:
                return self._to_routes(request, message, routes)
        if isinstance(caller, Agent):
            peer = resources.peer(uri.user)
            if peer is not None and peer.enabled:
                return await self._to_peer(request, message, peer)
            number = _egress_number(caller, uri.user, resources)
            if number is not None:
                private = caller.privacy == "PRIVATE"
                return self._to_pstn(request, message, number, uri.user, caller.name, private)
            if callee_domain is not None:
                return MessageResponse(reply(message, 404))  # no such agent, peer or number
            return MessageResponse(reply(message, 403, "Forbidden (No Egress Policy Matches)"))
        dod = message.get(DOD_NUMBER)  # a peer calls an agent, else the PSTN
        if dod is None:
            return MessageResponse(reply(message, 400, f"Missing {DOD_NUMBER}"))
        number = resources.number(dod)
        if number is None:
            return MessageResponse(reply(message, 404, f"Unknown {DOD_NUMBER}"))
        private = wants_privacy(message.get(DOD_PRIVACY))
        message.remove(DOD_NUMBER)
        message.remove(DOD_PRIVACY)
        return self._to_pstn(request, message, number, uri.user, caller.name, private)

    async def _caller(
        self, request: MessageRequest, message: Request, resources: Resources
    ) -> Agent | Peer | Trunk | Claims | MessageResponse:
        """Classify and authenticate the caller: a browser phone by its token, a trunk
        named by the Request-URI host, an agent of a domain by its From, a peer by its
        From user, or a trunk whose access control list lets the source address in."""
        token = message.get(TOKEN_HEADER)
        if token is not None:
            return await self._token_caller(request, message, token)
        uri = message.uri
        trunk = None
        if isinstance(uri, SipUri):  # by the host it names, or the Contact we registered
            trunk = resources.trunk_by_inbound_uri(uri.host) or resources.trunk_by_contact_user(
                uri.user or ""
            )
        if trunk is not None:
            return await self._trunk_caller(request, message, trunk)
        caller = message.from_.sip_uri
        domain = resources.domain(caller.host) if caller is not None else None
        if domain is not None and caller is not None:
            if domain.acl is not None and not domain.acl.permits(request.sender.host):
                return MessageResponse(reply(message, 403, "Forbidden By Access Control List"))
            agent = resources.agent(domain.domain_uri, caller.user or "")
            refused = await self._authenticate(
                request,
                message,
                domain.domain_uri,
                lambda username: resources.password_for(domain.domain_uri, username),
                agent.credentials.username if agent and agent.credentials else None,
                domain.digest_algorithms,
            )
            return refused or agent or MessageResponse(reply(message, 403, BAD_CREDENTIALS))
        peer = resources.peer(caller.user) if caller is not None and caller.user else None
        if peer is not None and peer.enabled:
            if peer.acl is not None and not peer.acl.permits(request.sender.host):
                return MessageResponse(reply(message, 403, "Forbidden By Access Control List"))
            if peer.credentials is None:
                # without credentials only an allow rule for its address vouches for it
                if peer.acl is None or not peer.acl.explicitly_allows(request.sender.host):
                    return MessageResponse(reply(message, 403, "Forbidden (Peer Not Verified)"))
                return peer
            refused = await self._prove(request, message, peer.realm, peer.credentials)
            return refused or peer
        trunks = resources.trunks_allowing(request.sender.host)
        if trunks:
            return await self._trunk_caller(request, message, trunks[0])
        return MessageResponse(reply(message, 403, "Forbidden (Caller Not In A Domain)"))

    async def _token_caller(
        self, request: MessageRequest, message: Request, token: str
    ) -> Claims | MessageResponse:
        if self.tokens is None:
            return MessageResponse(reply(message, 403, "Forbidden (Tokens Not Accepted Here)"))
        try:
            claims = await self.tokens.verify(token)
        except TokenError as error:
            log.info("%s from %s: token refused: %s", message.method, request.sender, error.reason)
            return MessageResponse(reply(message, error.status, error.phrase))
        if not claims.allows(message.method):
            log.info(
                "%s from %s: not allowed by the token of %s",
                message.method,
                request.sender,
                claims.aor,
            )
            return MessageResponse(reply(message, 403, "Forbidden (Method Not Allowed By Token)"))
        return claims

    async def _from_token(
        self, request: MessageRequest, message: Request, claims: Claims, resources: Resources
    ) -> MessageResponse:
        """A browser phone calls an agent (or another browser phone) of the token's
        domain, else the token's aorLink (a conference server, say); nothing else."""
        if claims.privacy == "PRIVATE":
            message.remove("Privacy")
            message.add("Privacy", "id")  # RFC 3323: the next hop hides the caller
        uri = message.uri
        domain = resources.domain(uri.host) if isinstance(uri, SipUri) else None
        in_reach = domain is not None and claims.domain.lower() in (
            "",
            domain.domain_uri.lower(),
        )
        if domain is not None and in_reach and isinstance(uri, SipUri) and uri.user:
            agent = resources.agent(domain.domain_uri, uri.user)
            if agent is not None and agent.enabled:
                return await self._to_agent(request, message, agent)
            aor = f"sip:{uri.user}@{domain.domain_uri.lower()}"
            routes = await self._location.find_routes(aor, message.call_id)
            if routes:
                return self._to_routes(request, message, routes)
        if not claims.aor_link:
            return MessageResponse(reply(message, 404))
        return await self._to_link(request, message, claims.aor_link, resources)

    async def _trunk_caller(
        self, request: MessageRequest, message: Request, trunk: Trunk
    ) -> Trunk | MessageResponse:
        if trunk.acl is not None and not trunk.acl.permits(request.sender.host):
            return MessageResponse(reply(message, 403, "Forbidden By Access Control List"))
        if trunk.inbound_credentials is None:
            return trunk
        refused = await self._prove(request, message, trunk.realm, trunk.inbound_credentials)
        return refused or trunk

    async def _prove(
        self, request: MessageRequest, message: Request, realm: str, credentials: Credentials
    ) -> MessageResponse | None:
        """The caller must answer with exactly these credentials (a peer's, a trunk's)."""
        return await self._authenticate(
            request,
            message,
            realm,
            lambda username: credentials.password if username == credentials.username else None,
            credentials.username,
        )

    async def _authenticate(
        self,
        request: MessageRequest,
        message: Request,
        realm: str,
        password_for: Callable[[str], str | None],
        expected: str | None,
        algorithms: tuple[str, ...] = (),
    ) -> MessageResponse | None:
        """None when the caller proved to be ``expected`` in ``realm``; else the 407
        challenge or the 403 (a failure counts towards a ban)."""
        verdict, username = await self._auth.check(
            message.method, message.proxy_authorizations, realm, password_for, algorithms
        )
        if verdict in (Verdict.CHALLENGE, Verdict.STALE):
            headers = self._auth.challenge_headers(
                "Proxy-Authenticate", realm, stale=verdict is Verdict.STALE, algorithms=algorithms
            )
            return MessageResponse(reply(message, 407, headers=headers))
        if verdict is Verdict.FORBIDDEN:
            await self.guard.failed(request.sender.host, username)
        if verdict is Verdict.FORBIDDEN or expected is None or username != expected:
            return MessageResponse(reply(message, 403, BAD_CREDENTIALS))
        return None

    # -- where calls go

    async def _from_pstn(
        self, request: MessageRequest, message: Request, trunk: Trunk, resources: Resources
    ) -> MessageResponse:
        """A call from a provider: the called Number, if it belongs to this trunk, says
        where it goes (its aorLink) and what to add (its extra headers)."""
        uri = message.uri
        user = uri.user if isinstance(uri, SipUri) else None
        if user and resources.trunk_by_contact_user(user) is not None:
            # sent to the Contact the Registry registered: the number is in the To header
            to = message.to.sip_uri
            user = to.user if to is not None else None
        number = resources.number(user) if user else None
        if number is None:
            return MessageResponse(reply(message, 403, "Forbidden (No Such Number)"))
        if number.trunk is not None and number.trunk.ref != trunk.ref:
            return MessageResponse(reply(message, 403, "Forbidden (Number Of Another Trunk)"))
        affinity = (
            message.get(number.session_affinity_header) or ""
            if number.session_affinity_header
            else ""
        )
        for name, value in number.extra_headers:
            message.add(name, value)
        return await self._to_link(request, message, number.aor_link, resources, affinity)

    async def _to_link(
        self,
        request: MessageRequest,
        message: Request,
        link: str,
        resources: Resources,
        affinity: str = "",
    ) -> MessageResponse:
        """To an aorLink: an agent's address, a peer's AOR, or any AOR with bindings."""
        try:
            target = parse_uri(link, what="aorLink") if link.startswith("sip") else None
        except ParseError:
            target = None
        domain = resources.domain(target.host) if isinstance(target, SipUri) else None
        if domain is not None and isinstance(target, SipUri):
            agent = resources.agent(domain.domain_uri, target.user or "")
            if agent is not None and agent.enabled:
                return await self._to_agent(request, message, agent)
        peer = resources.peer_by_aor(link)
        if peer is not None and peer.enabled:
            return await self._to_peer(request, message, peer, affinity)
        routes = await self._location.find_routes(aor_key(link), message.call_id)
        if not routes:
            return MessageResponse(reply(message, 480))
        return self._towards(request, message, routes[0])

    async def _to_agent(
        self, request: MessageRequest, message: Request, callee: Agent
    ) -> MessageResponse:
        aor = f"sip:{callee.username}@{callee.domain.domain_uri.lower()}"
        return await self._to_aor(request, message, aor)

    async def _to_aor(self, request: MessageRequest, message: Request, aor: str) -> MessageResponse:
        routes = await self._location.find_routes(aor, message.call_id)
        if not routes:
            return MessageResponse(reply(message, 480))
        return self._to_routes(request, message, routes)

    def _to_routes(
        self, request: MessageRequest, message: Request, routes: list[Route]
    ) -> MessageResponse:
        """To the AOR's bindings that Location found (one lookup a request: each may move
        round-robin counters and session affinity)."""
        if len(routes) > 1 and message.method == "INVITE":
            return self._ring_all(request, message, routes)
        return self._towards(request, message, routes[0])

    def _ring_all(
        self, request: MessageRequest, message: Request, routes: list[Route]
    ) -> MessageResponse:
        """Every binding rings at once; the EdgePort keeps the first 2xx and cancels the
        rest (parallel forking, RFC 3261 section 16.7). Each branch has its own
        Record-Route, so the dialog follows the device that answers."""
        decrement_max_forwards(message)
        forks = [
            Fork(
                route.contact_uri,
                route.destination,
                NetInterface.parse(route.flow) if route.flow else None,
                tuple(
                    self._record_routes(
                        request, message, route.transport, route.flow or str(route.destination)
                    )
                ),
            )
            for route in routes
        ]
        return MessageResponse(message, forks=forks)

    async def _to_peer(
        self, request: MessageRequest, message: Request, peer: Peer, affinity: str = ""
    ) -> MessageResponse:
        """To one instance of a peer: its registrations, else its static contactAddr."""
        routes = await self._location.find_routes(aor_key(peer.aor))
        if not routes:
            static = _static_route(peer, message)
            if static is None:
                return MessageResponse(reply(message, 480))
            if self.prober is not None and not self.prober.available(peer):
                return MessageResponse(reply(message, 480, "Temporarily Unavailable (Peer Down)"))
            routes = [static]
        return self._towards(request, message, await self._balancer.pick(peer, routes, affinity))

    def _to_flow(self, request: MessageRequest, message: Request, hop: SipUri) -> MessageResponse:
        """Another EdgePort's Connect sends us a call for a connection we hold: on to it,
        with our own Record-Route so that the dialog keeps passing here."""
        flow = decode_net(hop.param(FLOW) or "")
        signature = flow_signature(self._route_key, message.call_id, flow)
        if not hmac.compare_digest(hop.param(SIG) or "", signature):
            return MessageResponse(reply(message, 403, "Forbidden (Not A Flow Of Ours)"))
        try:
            target = NetInterface.parse(flow)
        except ValueError:
            return MessageResponse(reply(message, 400, "Bad Flow In Route"))
        decrement_max_forwards(message)
        for value in self._record_routes(request, message, target.transport, flow):
            message.add("Record-Route", value, first=True)
        return MessageResponse(message, target_flow=target)

    def _towards(self, request: MessageRequest, message: Request, route: Route) -> MessageResponse:
        contact = _bulk_number_contact(route.contact_uri, message)
        if contact != route.contact_uri:
            route = dataclasses.replace(route, contact_uri=contact)
        hop = _other_edgeport(request, route)
        if hop is not None:  # the callee's connection is held by another EdgePort
            encoded = encode_net(route.flow)
            signature = flow_signature(self._route_key, message.call_id, route.flow)
            host = f"[{hop.host}]" if ":" in hop.host else hop.host
            via = f";transport={hop.transport.value}" if hop.transport is not Transport.UDP else ""
            self._forward(request, message, route.contact_uri, hop.transport, "")
            message.add(
                "Route",
                f"<sip:{host}:{hop.port}{via};lr;{FLOW}={encoded};{SIG}={signature}>",
                first=True,
            )
            return MessageResponse(message, destination=hop)
        self._forward(
            request,
            message,
            route.contact_uri,
            route.transport,
            route.flow or str(route.destination),
        )
        return MessageResponse(
            message,
            destination=route.destination,
            target_flow=NetInterface.parse(route.flow) if route.flow else None,
        )

    def _to_pstn(
        self,
        request: MessageRequest,
        message: Request,
        number: Number,
        callee: str,
        name: str,
        private: bool,
    ) -> MessageResponse:
        """Out through the Number's trunk: its URIs in order, failing over on 408, 5xx or
        no answer (the EdgePort tries the alternatives), with the Number as the asserted
        identity. Identity headers from the caller are replaced, never passed on
        (RFC 3325 section 5: they are not trusted)."""
        trunk = number.trunk
        if trunk is None:
            return MessageResponse(reply(message, 403, "Forbidden (Number Has No Trunk)"))
        targets = trunk_targets(trunk, callee)
        if not targets:
            return MessageResponse(reply(message, 503, "Service Unavailable (Trunk Has No URI)"))
        first = parse_uri(targets[0], what="trunk URI")
        assert isinstance(first, SipUri)  # trunk_targets writes sip: URIs
        for header in ("P-Asserted-Identity", "Remote-Party-ID", "Privacy", "P-Preferred-Identity"):
            message.remove(header)
        for header, value in identity_headers(number, name, private, first.host):
            message.add(header, value)
        transport = Transport.parse(first.transport or ("tls" if first.secure else "udp"))
        self._forward(request, message, targets[0], transport, "")
        outbound = trunk.outbound_credentials
        return MessageResponse(
            message,
            alternatives=targets[1:],
            credentials=(outbound.username, outbound.password) if outbound else None,
        )

    def _forward(
        self,
        request: MessageRequest,
        message: Request,
        contact_uri: str,
        transport: Transport,
        callee_flow: str,
    ) -> None:
        """Retarget, spend a hop, record-route.

        When the inbound and outbound interfaces differ, two Record-Route values go in,
        the one facing the callee on top (RFC 3261 section 16.6 step 4, RFC 5658).
        """
        message.set_uri(parse_uri(contact_uri, what="Contact"))
        decrement_max_forwards(message)
        for value in self._record_routes(request, message, transport, callee_flow):
            message.add("Record-Route", value, first=True)

    def _record_routes(
        self, request: MessageRequest, message: Request, transport: Transport, callee_flow: str
    ) -> list[str]:
        """Our Record-Route values, in the order to put each on top: the one facing the
        caller, then the one facing the callee when the transports differ."""
        if message.method not in ("INVITE", "SUBSCRIBE", "REFER"):
            return []
        inbound = listening_point(request, request.sender.transport)
        outbound = listening_point(request, transport)
        flows = signed_flows(self._route_key, message.call_id)
        if message.from_.tag and _is_token(message.from_.tag):
            flows = signed_flows(
                self._route_key,
                message.call_id,
                message.from_.tag,
                encode_net(str(request.sender)),
                encode_net(callee_flow) if callee_flow else "",
            )
        values = []
        if inbound is not None:
            values.append(record_route(request, inbound, flows))
        if outbound is not None and outbound != inbound:
            values.append(record_route(request, outbound, flows))
        return values


BAD_CREDENTIALS: Final = "Forbidden (Bad Credentials)"


def _is_our_realm(resources: Resources, realm: str) -> bool:
    return (
        resources.domain(realm) is not None
        or any(p.realm == realm for p in resources.peers.values())
        or any(t.realm == realm for t in resources.trunks)
    )


def _egress_number(caller: Agent, user: str, resources: Resources) -> Number | None:
    """The Number of the caller's domain's first egress policy that matches the callee."""
    for policy in caller.domain.egress_policies:
        if policy.rule.fullmatch(user) or policy.rule.match(user):
            return resources.number_by_ref(policy.number_ref)
    return None


def _bulk_number_contact(contact: str, message: Request) -> str:
    """RFC 6140 (SIP-Connect 1.1): a PBX registers one Contact with ``bnc`` and no user
    for all its numbers; a call to one of them goes to that Contact with the dialled
    number as its user, and without ``bnc``."""
    if ";bnc" not in contact.lower():
        return contact
    try:
        uri = parse_uri(contact, what="Contact")
    except ParseError:
        return contact
    dialled = message.uri.user if isinstance(message.uri, SipUri) else None
    if not isinstance(uri, SipUri) or uri.user or uri.param("bnc") is None or not dialled:
        return contact
    return str(dataclasses.replace(uri.with_params(bnc=None), user=dialled))


def _other_edgeport(request: MessageRequest, route: Route) -> NetInterface | None:
    """Where to send a request whose callee holds a connection to another EdgePort:
    that EdgePort's TCP (else UDP) listening point, if it names a usable address."""
    if not route.flow or not route.edge_port_ref or not request.edge_port_ref:
        return None
    if route.edge_port_ref == request.edge_port_ref:
        return None
    points = sorted(
        (lp for lp in route.listening_points if lp.transport in (Transport.TCP, Transport.UDP)),
        key=lambda lp: lp.transport is not Transport.TCP,
    )
    for lp in points:
        if lp.host not in ("0.0.0.0", "::", ""):
            return lp
    log.warning(
        "the callee's connection is on EdgePort %s, which listens on no address we can name",
        route.edge_port_ref,
    )
    return None


def _static_route(peer: Peer, message: Request) -> Route | None:
    """A peer that never registers is reached at its contactAddr (host or host:port)."""
    where = contact_of(peer)
    if where is None:
        return None
    uri = message.uri
    user = uri.user if isinstance(uri, SipUri) and uri.user else ""
    at = f"{user}@" if user else ""
    shown = f"[{where.host}]" if ":" in where.host else where.host
    return Route(
        user=user,
        host=where.host,
        port=where.port,
        contact_uri=f"sip:{at}{shown}:{where.port}",
        expires=3600,
    )


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
