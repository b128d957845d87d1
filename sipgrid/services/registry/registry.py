"""The Registry: keeps every Trunk with ``sendRegister`` registered with its provider.

For each such trunk it sends REGISTER to the trunk's outbound URIs in priority order,
answers the provider's challenge with the trunk's outbound credentials, and refreshes
before the expiry the provider granted (its Contact ``expires`` or Expires, not a fixed
interval). A failure (no answer, 403, 5xx...) backs off exponentially with jitter (5 s
doubling up to 5 min) and moves to the trunk's next URI. A trunk that loses
``sendRegister`` or goes away is unregistered (Expires: 0).

The provider sends calls to the registered Contact, whose user part names the trunk
(``trunk_contact_user``): Connect recognises them as the trunk's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sipgrid.api.types import NetInterface, Transport
from sipgrid.services.connect.index import TRUNK_CONTACT_PREFIX, Resources, Trunk
from sipgrid.services.connect.routing import trunk_targets
from sipgrid.services.settings import DEFAULTS
from sipgrid.sip import (
    ParseError,
    Request,
    Response,
    SipUri,
    locate,
    parse_uri,
)
from sipgrid.sip.digest import authorization_for

log = logging.getLogger("sipgrid.registry")

REQUESTED_EXPIRES = 3600  # what we ask for; the provider decides
REFRESH_AT = 0.8  # of the granted expiry
MIN_REFRESH = 5.0
BACKOFF_FIRST = DEFAULTS.registry_backoff  # seconds
BACKOFF_MAX = 300.0
TICK = 1.0

Send = Callable[[Request, NetInterface], Awaitable[Response | None]]


def trunk_contact_user(trunk_ref: str) -> str:
    """The user part of the Contact we register for a trunk (calls to it are the trunk's)."""
    return f"{TRUNK_CONTACT_PREFIX}{trunk_ref}"


class Lease(Protocol):
    """Which instance registers a trunk, when several run (the distributed wiring)."""

    async def hold(self, ref: str, ttl: float | None = None) -> bool: ...


_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class RedisLease:
    """A lease per trunk in Redis: the instance that holds it registers the trunk and
    renews it every tick; when that instance dies the lease runs out (``ttl``) and
    another takes the trunk over."""

    def __init__(self, client: Any, *, ttl: float = 10.0, prefix: str = "sipgrid:") -> None:
        self._redis = client
        self._id = secrets.token_hex(8)
        self._ttl_ms = int(ttl * 1000)
        self._prefix = prefix
        self._script = client.register_script(_HOLD)

    async def hold(self, ref: str, ttl: float | None = None) -> bool:
        """Take or renew the lease of one trunk, for ``ttl`` seconds (the default
        otherwise)."""
        key = f"{self._prefix}registry:lease:{ref}"
        ttl_ms = int(ttl * 1000) if ttl is not None else self._ttl_ms
        return bool(await self._script(keys=[key], args=[self._id, ttl_ms]))


def lease_ttl(granted: int, longest: float = 10.0) -> float:
    """How long a trunk's lease lasts: short enough that a standby instance takes a dead
    holder's trunk over before the binding the provider granted runs out (the holder
    refreshes at 0.8 of it), never under 2.5 s (the holder renews it every second)."""
    if granted <= 0:
        return longest
    return min(longest, max(2.5, granted * 0.15))


@dataclass
class TrunkStatus:
    """What the Registry knows of one trunk (``sipgrid trunks status`` shows it)."""

    ref: str
    state: str = "registering"  # registering, registered, backing off, unregistered, standby
    registrar: str = ""
    last_status: int | None = None
    last_reason: str = ""
    expires_at: float | None = None
    granted: int = 0  # the expiry the provider granted last
    next_attempt: float = 0.0
    failures: int = 0
    uri_index: int = 0
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(8)}@sipgrid")
    cseq: int = 0
    in_flight: bool = False

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "ref": self.ref,
            "state": self.state,
            "registrar": self.registrar,
            "last_status": self.last_status,
            "last_reason": self.last_reason,
            "expires_in": round(self.expires_at - now) if self.expires_at else None,
            "next_attempt_in": max(0, round(self.next_attempt - now)),
            "failures": self.failures,
        }


class Registry:
    def __init__(
        self,
        resources: Callable[[], Resources],
        send: Send,
        contact: Callable[[Transport], NetInterface | None],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        lease: Lease | None = None,
        backoff: float = BACKOFF_FIRST,
    ) -> None:
        self._resources = resources
        self._lease = lease
        self._send = send
        self._contact = contact
        self._clock = clock
        self._rng = rng or random.Random()
        self.backoff = backoff  # the first wait after a failure; it doubles
        self.status: dict[str, TrunkStatus] = {}
        self._last_seen: dict[str, Trunk] = {}  # to unregister a trunk that went away
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # Redis away: try again on the next tick
                log.warning("registry: %s", error)
            await asyncio.sleep(TICK)

    async def tick(self) -> None:
        """Start what is due: registrations, refreshes, retries and unregistrations.
        With a lease, only the trunks this instance holds (the others' stay in standby)."""
        now = self._clock()
        wanted = {
            t.ref: t
            for t in self._resources().trunks
            if t.send_register and t.outbound_credentials is not None and trunk_targets(t, "x")
        }
        for ref, trunk in wanted.items():
            status = self.status.setdefault(ref, TrunkStatus(ref))
            if self._lease is not None and not await self._lease.hold(
                ref, lease_ttl(status.granted)
            ):
                status.state, status.expires_at = "standby", None  # another instance has it
                continue
            if status.state == "standby":
                status.state, status.next_attempt = "registering", 0.0
            if status.state == "unregistered":
                status.state, status.next_attempt = "registering", 0.0
            if not status.in_flight and now >= status.next_attempt:
                self._spawn(self._register(trunk, status, REQUESTED_EXPIRES))
        for ref, status in list(self.status.items()):
            if ref in wanted or status.in_flight:
                continue
            gone = self._last_seen.get(ref)
            if status.state == "registered" and gone is not None:
                self._spawn(self._register(gone, status, 0))  # gone or disabled: unregister
            else:
                del self.status[ref]
        self._last_seen.update(wanted)

    def snapshot(self) -> tuple[float, list[TrunkStatus]]:
        """Now, and every trunk's status by ref."""
        return self._clock(), sorted(self.status.values(), key=lambda s: s.ref)

    def report(self) -> list[dict[str, object]]:
        now, statuses = self.snapshot()
        return [s.as_dict(now) for s in statuses]

    async def stop(self) -> None:
        """Unregister every registered trunk (best effort), then stop."""
        for status in list(self.status.values()):
            trunk = self._last_seen.get(status.ref)
            if status.state == "registered" and trunk is not None and not status.in_flight:
                await self._register(trunk, status, 0)
        for task in list(self._tasks):
            task.cancel()

    # -- one REGISTER transaction (with its challenge)

    async def _register(self, trunk: Trunk, status: TrunkStatus, expires: int) -> None:
        status.in_flight = True
        try:
            await self._attempt(trunk, status, expires)
        except Exception as error:  # never let a trunk's task die silently
            log.warning("trunk %s: registration failed: %s", trunk.ref, error)
            self._failed(status, None, str(error))
        finally:
            status.in_flight = False

    async def _attempt(self, trunk: Trunk, status: TrunkStatus, expires: int) -> None:
        targets = trunk_targets(trunk, "x", self._rng)
        registrar = parse_uri(targets[status.uri_index % len(targets)], what="trunk URI")
        assert isinstance(registrar, SipUri)
        target = locate(registrar)
        transport = Transport.parse(target.transport or "udp")
        where = NetInterface(target.host, target.port or target.default_port, transport)
        contact = self._contact(transport)
        if contact is None:
            self._failed(status, None, f"no {transport.value} listening point to register from")
            return
        status.registrar = f"{where.host}:{where.port};transport={transport.value}"
        request = self._request(trunk, status, registrar, contact, expires)
        response = await self._send(request, where)
        if response is not None and response.status in (401, 407):
            retry = self._answered(trunk, status, registrar, contact, expires, response)
            if retry is None:
                self._failed(status, response, "cannot answer the challenge")
                return
            response = await self._send(retry, where)
        if response is None or not 200 <= response.status < 300:
            self._failed(status, response, "no answer" if response is None else "")
            return
        status.last_status, status.last_reason = response.status, response.reason
        status.failures = 0
        now = self._clock()
        if expires == 0:
            status.state, status.expires_at = "unregistered", None
            log.info("trunk %s unregistered from %s", trunk.ref, status.registrar)
            return
        granted = _granted(response, trunk_contact_user(trunk.ref), expires)
        status.state, status.expires_at = "registered", now + granted
        status.granted = granted
        status.next_attempt = now + max(MIN_REFRESH, granted * REFRESH_AT)
        log.info("trunk %s registered with %s for %d s", trunk.ref, status.registrar, granted)

    def _failed(self, status: TrunkStatus, response: Response | None, why: str) -> None:
        status.failures += 1
        status.uri_index += 1  # the next URI of the trunk, if it has one
        status.last_status = response.status if response is not None else None
        status.last_reason = why or (response.reason if response is not None else "")
        delay = min(BACKOFF_MAX, self.backoff * 2 ** (status.failures - 1))
        delay *= self._rng.uniform(0.8, 1.2)  # so that many trunks do not retry in step
        status.state = "backing off"
        status.expires_at = None
        status.next_attempt = self._clock() + delay
        log.warning(
            "trunk %s: registration failed (%s), next try in %.1f s",
            status.ref,
            status.last_status or status.last_reason,
            delay,
        )

    def _request(
        self,
        trunk: Trunk,
        status: TrunkStatus,
        registrar: SipUri,
        contact: NetInterface,
        expires: int,
    ) -> Request:
        assert trunk.outbound_credentials is not None
        user = trunk.outbound_credentials.username
        host = registrar.host
        status.cseq += 1
        ours = f"[{contact.host}]" if ":" in contact.host else contact.host
        params = (
            "" if contact.transport is Transport.UDP else f";transport={contact.transport.value}"
        )
        request = Request("REGISTER", parse_uri(f"sip:{host}", what="registrar"))
        for name, value in (
            ("From", f"<sip:{user}@{host}>;tag={secrets.token_hex(4)}"),
            ("To", f"<sip:{user}@{host}>"),
            ("Call-ID", status.call_id),
            ("CSeq", f"{status.cseq} REGISTER"),
            ("Max-Forwards", "70"),
            (
                "Contact",
                f"<sip:{trunk_contact_user(trunk.ref)}@{ours}:{contact.port}{params}>",
            ),
            ("Expires", str(expires)),
            ("User-Agent", "sipgrid"),
            ("Content-Length", "0"),
        ):
            request.add(name, value)
        return request

    def _answered(
        self,
        trunk: Trunk,
        status: TrunkStatus,
        registrar: SipUri,
        contact: NetInterface,
        expires: int,
        response: Response,
    ) -> Request | None:
        """The REGISTER again with the answer to the provider's challenge."""
        credentials = trunk.outbound_credentials
        assert credentials is not None
        request = self._request(trunk, status, registrar, contact, expires)
        found = authorization_for(request, response, credentials.username, credentials.password)
        if found is None:
            return None
        request.add(*found)
        return request

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _granted(response: Response, user: str, asked: int) -> int:
    """The expiry the provider granted our Contact: its ``expires`` parameter in the
    200's Contact, else the Expires header, else what we asked for."""
    try:
        for value in response.contacts:
            uri = value.sip_uri
            if uri is not None and uri.user == user and value.expires is not None:
                return int(value.expires)
        if response.expires is not None:
            return int(response.expires)
    except (ParseError, ValueError):
        pass
    return asked
