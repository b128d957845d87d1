"""The registrar (RFC 3261 section 10.3): digest-authenticated REGISTER for agents."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

from sipgrid.api.types import LocationService, MessageRequest, Route, Transport
from sipgrid.services.metrics import REGISTRATION_RESULTS
from sipgrid.sip import ParseError, Request, Response, SipUri, default_port, locate

from .auth import Authenticator, Verdict
from .context import TOKEN_HEADER, reply
from .guard import Guard
from .index import AccessControlList, Resources, aor_key
from .routing import SESSION_COUNT
from .tokens import TokenError, TokenVerifier

log: Final = logging.getLogger("sipgrid.connect")

MIN_EXPIRES: Final = 60
MAX_EXPIRES: Final = 3600
DEFAULT_EXPIRES: Final = 3600
REGISTRANTS_KEPT: Final = 10_000


class Registrar:
    def __init__(
        self,
        resources: Callable[[], Resources],
        location: LocationService,
        auth: Authenticator,
        clock: Callable[[], float] = time.time,
        guard: Guard | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self._resources = resources
        self._location = location
        self._auth = auth
        self._clock = clock
        self._guard = guard or Guard(clock=clock)
        self.tokens = tokens
        # who may register, by (Request-URI host, To user), for the resources in force:
        # a phone registers again and again; a new set of resources empties it, and only
        # those found are kept (an unknown user, a scan, adds nothing)
        self._registrants: dict[tuple[str, str], Registrant] = {}
        self._registrants_of: Resources | None = None

    async def register(self, request: MessageRequest) -> Response:
        response = await self._register(request)
        result = _result(response)
        REGISTRATION_RESULTS[result] = REGISTRATION_RESULTS.get(result, 0) + 1
        return response

    async def _register(self, request: MessageRequest) -> Response:
        message = request.message
        assert isinstance(message, Request)
        uri = message.uri
        resources = self._resources()
        to_uri = message.to.sip_uri
        if to_uri is None or to_uri.user is None:
            return reply(message, 400, "To Must Be A SIP URI With A User")
        token = message.get(TOKEN_HEADER)
        if token is not None:
            return await self._register_with_token(request, message, to_uri, token)
        who = self._registrant(resources, uri.host if isinstance(uri, SipUri) else "", to_uri.user)
        if who is None:
            return reply(message, 404, "Domain Not Served Here")
        if who.acl is not None and not who.acl.permits(request.sender.host):
            return reply(message, 403, "Forbidden By Access Control List")

        verdict, username = await self._auth.check(
            "REGISTER", message.authorizations, who.realm, who.password_for, who.algorithms
        )
        if verdict in (Verdict.CHALLENGE, Verdict.STALE):
            headers = self._auth.challenge_headers(
                "WWW-Authenticate",
                who.realm,
                stale=verdict is Verdict.STALE,
                algorithms=who.algorithms,
            )
            return reply(message, 401, headers=headers)
        if verdict is Verdict.FORBIDDEN:
            await self._guard.failed(request.sender.host, username)
            return reply(message, 403, "Forbidden (Bad Credentials)")
        if who.username is None or who.username != username:
            return reply(message, 403, "Forbidden (Not Your Address)")
        return await self._bind(request, who.aor, who.max_contacts, who.expires)

    def _registrant(self, resources: Resources, host: str, user: str) -> Registrant | None:
        if resources is not self._registrants_of:
            self._registrants = {}
            self._registrants_of = resources
        key = (host, user)
        found = self._registrants.get(key)
        if found is None:
            found = _registrant(resources, host, user)
            if found is not None:
                if len(self._registrants) >= REGISTRANTS_KEPT:
                    self._registrants.clear()
                self._registrants[key] = found
        return found

    async def _register_with_token(
        self, request: MessageRequest, message: Request, to_uri: SipUri, token: str
    ) -> Response:
        """Bind the token's AOR, for no longer than the token lives (Routr's
        X-Connect-Token); the To header must name that AOR."""
        if self.tokens is None:
            return reply(message, 403, "Forbidden (Tokens Not Accepted Here)")
        try:
            claims = await self.tokens.verify(token)
        except TokenError as error:
            log.info("REGISTER from %s: token refused: %s", request.sender, error.reason)
            return reply(message, error.status, error.phrase)
        if not claims.allows("REGISTER"):
            return reply(message, 403, "Forbidden (Method Not Allowed By Token)")
        aor = claims.aor_uri
        if (aor.user, aor.host.lower()) != (to_uri.user, to_uri.host.lower()):
            return reply(message, 403, "Forbidden (Token Is For Another AOR)")
        limit = 0
        if claims.expires_at is not None:
            limit = max(1, int(claims.expires_at - self._clock()))
        return await self._bind(request, aor_key(claims.aor), claims.max_contacts, limit)

    async def _bind(
        self, request: MessageRequest, aor: str, max_contacts: int, limit: int
    ) -> Response:
        """Add, refresh or remove the REGISTER's bindings of ``aor``; no binding lasts
        longer than ``limit`` seconds when it is set."""
        message = request.message
        assert isinstance(message, Request)
        try:
            contacts = message.contacts
            header_expires = message.expires
        except ParseError as error:
            return reply(message, 400, error.reason)
        if any(c.wildcard for c in contacts):
            if header_expires != 0:
                return reply(message, 400, "Wildcard Contact Needs Expires 0")
            await self._location.remove_routes(aor)
            return await self._ok(message, aor)
        try:
            sessions = max(0, int(message.get(SESSION_COUNT) or 0))
        except ValueError:
            return reply(message, 400, f"{SESSION_COUNT} Must Be A Number")
        routes = None  # the AOR's routes after the last binding, when there is one
        bindable = [(c, uri) for c in contacts if (uri := c.sip_uri) is not None]
        for n, (contact, uri) in enumerate(bindable):
            expires = contact.expires if contact.expires is not None else header_expires
            expires = DEFAULT_EXPIRES if expires is None else expires
            if limit:
                expires = min(expires, limit) if expires else 0
            if 0 < expires < MIN_EXPIRES and expires != limit:
                return reply(message, 423, headers=[("Min-Expires", MIN_EXPIRES)])
            route = self._route(request, uri, min(expires, MAX_EXPIRES))
            route.session_count = sessions
            if n == len(bindable) - 1:  # the last: with the routes the 200 lists
                routes = await self._location.add_route_and_find(aor, route, max_contacts)
            else:
                await self._location.add_route(aor, route, max_contacts)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "registration %s %s expires %d",
                    aor,
                    route.contact_uri,
                    route.expires,
                    extra={
                        "call_id": message.call_id,
                        "aor": aor,
                        "contact": route.contact_uri,
                        "expires": route.expires,
                        "source": str(request.sender),
                    },
                )
        return await self._ok(message, aor, routes)

    def _route(self, request: MessageRequest, contact: SipUri, expires: int) -> Route:
        """The binding: where to reach the contact, behind NAT or not.

        Over UDP, a packet from another address than the top Via names comes through NAT
        (RFC 3581): the binding points at the source address. Over TCP the source port is
        the client's ephemeral one, so only another IP means NAT; the connection itself is
        kept as the flow to reuse while it stays open (RFC 5626 style).
        """
        message = request.message
        sender = request.sender
        via = message.top_via
        via_host = via.host.strip("[]")
        if sender.transport is Transport.UDP:
            nat = (via_host, via.port or 5060) != (sender.host, sender.port)
        else:
            nat = via_host != sender.host
        target = locate(contact)
        # a Contact that names no transport is reached the way the REGISTER came
        named = contact.transport or contact.secure
        transport = Transport.parse(target.transport or "udp") if named else sender.transport
        if nat:
            host, port, transport = sender.host, sender.port, sender.transport
        else:
            host, port = target.host, target.port or default_port(transport.value)
        return Route(
            user=contact.user or "",
            host=host,
            port=port,
            transport=transport,
            advertised_host=contact.host,
            advertised_port=contact.port or 5060,
            registered_on=self._clock(),
            expires=expires,
            edge_port_ref=request.edge_port_ref,
            listening_points=list(request.listening_points),
            localnets=list(request.localnets),
            external_addrs=list(request.external_addrs),
            contact_uri=str(contact),
            flow=str(sender) if sender.transport.reliable else "",
        )

    async def _ok(self, message: Request, aor: str, routes: list[Route] | None = None) -> Response:
        """The 200, listing the AOR's routes: ``routes`` when the last binding brought
        them, else those Location finds now."""
        now = self._clock()
        if routes is None:
            routes = await self._location.find_routes(aor)
        headers: list[tuple[str, object]] = [
            # the time left, rounded up: a binding just made shows what was granted
            ("Contact", f"<{r.contact_uri}>;expires={max(0, math.ceil(r.expires_at() - now))}")
            for r in routes
        ]
        headers.append(("Date", http_date(now)))
        return reply(message, 200, headers=headers)


_date: tuple[int, str] = (0, "")


def http_date(now: float) -> str:
    """The Date header's value (RFC 3261 section 20.17) for ``now``, formatted once a
    second: ``formatdate`` is cheap in a loop, yet costs some 28 us when its code and
    data have left the CPU's caches, as they do between two REGISTERs of a quiet server."""
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, formatdate(second, usegmt=True))
    return _date[1]


def _result(response: Response) -> str:
    if response.status in (401, 407):
        return "challenged"
    if response.status >= 300:
        return "refused"
    return "bound" if "Contact" in response else "removed"


@dataclass(frozen=True, slots=True, init=False)
class Registrant:
    """Who may register an address: an agent of a domain, or a peer under its AOR."""

    realm: str
    acl: AccessControlList | None
    password_for: Callable[[str], str | None]
    username: str | None  # whose credentials must be offered (None: nobody's)
    aor: str
    max_contacts: int
    expires: int
    algorithms: tuple[str, ...]  # what the challenge offers (empty: the default)

    def __init__(
        self,
        realm: str,
        acl: AccessControlList | None,
        password_for: Callable[[str], str | None],
        username: str | None,
        aor: str,
        max_contacts: int,
        expires: int,
        algorithms: tuple[str, ...] = (),
    ) -> None:
        # written out, as mypyc compiles it (headers.Via says why)
        object.__setattr__(self, "realm", realm)
        object.__setattr__(self, "acl", acl)
        object.__setattr__(self, "password_for", password_for)
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "aor", aor)
        object.__setattr__(self, "max_contacts", max_contacts)
        object.__setattr__(self, "expires", expires)
        object.__setattr__(self, "algorithms", algorithms)


def _registrant(resources: Resources, host: str, user: str) -> Registrant | None:
    """An agent when the Request-URI names a domain of ours, else a peer by username
    (several instances of a media server register one peer's AOR)."""
    domain = resources.domain(host)
    if domain is not None:
        agent = resources.agent(domain.domain_uri, user)
        return Registrant(
            domain.domain_uri,
            domain.acl,
            lambda username: resources.password_for(domain.domain_uri, username),
            agent.credentials.username if agent and agent.credentials else None,
            f"sip:{user}@{domain.domain_uri.lower()}",
            agent.max_contacts if agent else 0,
            agent.expires if agent else 0,
            domain.digest_algorithms,
        )
    peer = resources.peer(user)
    if peer is None or not peer.enabled:
        return None
    credentials = peer.credentials
    return Registrant(
        peer.realm,
        peer.acl,
        lambda username: (
            credentials.password if credentials and username == credentials.username else None
        ),
        credentials.username if credentials else None,
        aor_key(peer.aor),
        peer.max_contacts,
        peer.expires,
    )
