"""Static peers (a ``contactAddr``, never registering) are asked OPTIONS in turn: three
probes in a row without an answer take a peer out of rotation, one answer puts it back.
Routr ignores ``contactAddr``; Kamailio's dispatcher module works this way."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.settings import DEFAULTS
from sipgrid.sip import Request, Response, make_response, parse_uri

from .index import Peer, Resources

if TYPE_CHECKING:
    from sipgrid.services.edgeport.server import EdgePort

log = logging.getLogger("sipgrid.connect")

PROBE_INTERVAL = DEFAULTS.peer_probe_interval  # seconds between rounds
FAILURES_DOWN = 3  # probes without an answer, in a row, that take a peer out
PROBE_TIMEOUT = 5.0  # seconds a probe waits (its transaction may go on: Timer F)

Send = Callable[[Request, NetInterface], Awaitable[Response | None]]


def contact_of(peer: Peer) -> NetInterface | None:
    """Where a static peer is: its contactAddr, host or host:port (5060), over UDP."""
    if not peer.contact_addr:
        return None
    host, _, port = peer.contact_addr.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.endswith("]")):
        host, port = peer.contact_addr, "5060"  # a bare IPv6 address, or a bare name
    return NetInterface(host.strip("[]"), int(port), Transport.UDP)


class PeerProber:
    def __init__(
        self,
        resources: Callable[[], Resources],
        send: Send,
        *,
        interval: float | None = None,
        failures: int = FAILURES_DOWN,
    ) -> None:
        self._resources = resources
        self._send = send
        self.interval = PROBE_INTERVAL if interval is None else interval
        self._failures_down = failures
        self._failures: dict[str, int] = {}
        self.down: set[str] = set()  # refs of peers out of rotation

    def available(self, peer: Peer) -> bool:
        return peer.ref not in self.down

    async def run(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval)

    async def probe_all(self) -> None:
        peers = [p for p in self._resources().peers.values() if p.enabled and p.contact_addr]
        await asyncio.gather(*(self._probe(peer) for peer in peers))
        known = {p.ref for p in peers}
        self.down &= known  # a peer deleted or registering now is forgotten
        self._failures = {ref: n for ref, n in self._failures.items() if ref in known}

    async def _probe(self, peer: Peer) -> None:
        where = contact_of(peer)
        if where is None:
            return
        try:
            answer = await asyncio.wait_for(
                self._send(options_probe(peer, where), where), min(PROBE_TIMEOUT, self.interval)
            )
        except (TimeoutError, OSError):
            answer = None
        alive = answer is not None and answer.status not in (408, 503)
        if alive:
            self._failures.pop(peer.ref, None)
            if peer.ref in self.down:
                self.down.discard(peer.ref)
                log.info("peer %s is up again at %s", peer.username, peer.contact_addr)
            return
        failures = self._failures.get(peer.ref, 0) + 1
        self._failures[peer.ref] = failures
        if failures >= self._failures_down and peer.ref not in self.down:
            self.down.add(peer.ref)
            log.warning(
                "peer %s is down: %d probes of %s went unanswered",
                peer.username,
                failures,
                peer.contact_addr,
            )


def options_probe(peer: Peer, where: NetInterface) -> Request:
    host = f"[{where.host}]" if ":" in where.host else where.host
    uri = f"sip:{host}:{where.port}"
    request = Request("OPTIONS", parse_uri(uri, what="contactAddr"))
    for name, value in (
        ("From", f"<sip:sipgrid@{host}>;tag={secrets.token_hex(4)}"),
        ("To", f"<{uri}>"),
        ("Call-ID", f"probe-{secrets.token_hex(8)}@sipgrid"),
        ("CSeq", "1 OPTIONS"),
        ("Max-Forwards", "70"),
        ("User-Agent", f"sipgrid (probing peer {peer.username})"),
        ("Content-Length", "0"),
    ):
        request.add(name, value)
    return request


class _Refuse:
    """The processor of the probe sender: it asks, it serves nobody."""

    handles_responses = False

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        if isinstance(message, Request):
            return MessageResponse(make_response(message, 403, "Forbidden (Probe Sender)"))
        return MessageResponse(message)


async def probe_sender(
    bind: str,
    transports: tuple[str, ...] = ("udp",),
    security: dict[str, object] | None = None,
) -> EdgePort:
    """An EdgePort that only sends requests of its own (probes, the Requester's) and
    refuses whatever else reaches it: ``host:port``, port 0 for any; ``security`` is an
    EdgePort securityContext (certificates for TLS)."""
    from sipgrid.services.edgeport.config import EdgePortConfig
    from sipgrid.services.edgeport.server import EdgePort

    host, _, port = bind.rpartition(":")
    config = EdgePortConfig.model_validate(
        {
            "kind": "EdgePort",
            "ref": "connect-probes",
            "spec": {
                "bindAddr": host.strip("[]") or "0.0.0.0",
                "processor": {"addr": "127.0.0.1:0"},
                "transport": [{"protocol": t, "port": int(port or 0)} for t in transports],
                **({"securityContext": security} if security else {}),
            },
        }
    )
    sender = EdgePort(config, _Refuse())
    await sender.start()
    return sender
