"""The EdgePort: SIP on the wire, transaction-stateful and dialog-stateless.

It owns the sockets and the RFC 3261 transactions (sipgrid.sip.transaction), hands each
new request and each response to its processor as a MessageRequest, and sends what comes
back: a response upstream on the server transaction, or a request onward on a new
client transaction with our Via on top. Retransmissions, the ACK of a non-2xx, and
CANCEL (RFC 3261 section 16.10) are handled here, hop by hop, and never reach the
processor twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import ipaddress
import itertools
import logging
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sipgrid.api.types import (
    META_DESTINATION,
    META_DROP,
    META_FLOW,
    META_TARGET_FLOW,
    MessageRequest,
    MessageResponse,
    NetInterface,
    Processor,
    Transport,
)
from sipgrid.sip import (
    ParseError,
    Request,
    Response,
    SipUri,
    build_cancel,
    error_response,
    make_response,
    parse,
)
from sipgrid.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Deliver,
    Effect,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Terminated,
    Timeout,
    Transaction,
    TransportFailed,
    client_key,
    server_key,
)

from .config import EdgePortConfig
from .transports import Flow, TcpConnection, UdpEndpoint, parse_flow_id

log = logging.getLogger("sipgrid.edgeport")

CANCEL_GRACE = 32.0  # 64*T1: how long a cancelled INVITE may wait for the callee's 487
TIMER_C = 180.0  # RFC 3261 section 16.6 step 11: more than 3 minutes


@dataclass(slots=True, eq=False)
class ServerContext:
    """An upstream server transaction and what hangs off it."""

    tx: ServerInviteTransaction | ServerNonInviteTransaction
    flow: Flow
    client: ClientContext | None = None
    cancelled: bool = False
    # responses go through the processor one after another, in arrival order
    relay: asyncio.Future[None] | None = None


@dataclass(slots=True, eq=False)
class ClientContext:
    """A downstream client transaction and the server transaction it serves."""

    tx: ClientInviteTransaction | ClientNonInviteTransaction
    flow: Flow
    server: ServerContext | None
    provisional: bool = False
    cancel_pending: bool = False
    timer_c: asyncio.TimerHandle | None = None


class EdgePort:
    def __init__(
        self,
        config: EdgePortConfig,
        processor: Processor,
        *,
        clock: Callable[[], float] = time.monotonic,
        timer_c: float = TIMER_C,
        cancel_grace: float = CANCEL_GRACE,
    ) -> None:
        spec = config.spec
        self.timer_c = timer_c
        self.cancel_grace = cancel_grace
        self.ref = config.ref
        self.processor = processor
        self.methods = frozenset(spec.methods) | {"ACK", "CANCEL"}
        self.external_addrs = spec.external_addrs
        self.localnets = spec.localnets
        self._localnets = [ipaddress.ip_network(n, strict=False) for n in spec.localnets]
        self.max_message_size = spec.max_message_size
        self._spec = spec
        self._clock = clock
        self.listening_points: list[NetInterface] = []
        self._udp: dict[Transport, UdpEndpoint] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._udp_sockets: list[asyncio.DatagramTransport] = []
        self._flows: dict[str, Flow] = {}
        self._server_txs: dict[object, ServerContext] = {}
        self._client_txs: dict[tuple[str | None, str], ClientContext] = {}
        self._timers: list[tuple[float, int, ServerContext | ClientContext]] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: Counter[str] = Counter()

    # -- lifecycle

    async def start(self) -> None:
        """Listen on every transport of the spec. Transports given port 0 share one free
        port that the system picks (tests; read it back from ``listening_points``)."""
        for attempt in range(20):
            shared = 0
            try:
                for t in self._spec.transport:
                    port = t.port or shared
                    bound = await self._listen(
                        t.bind_addr or self._spec.bind_addr, port, t.protocol
                    )
                    if not t.port:
                        shared = bound
                return
            except OSError:
                if not shared or attempt == 19:
                    await self.stop()
                    raise
                await self.stop()  # another process took the port for the next transport
                self._reset_listeners()
        raise AssertionError("unreachable")

    async def _listen(self, host: str, port: int, protocol: str) -> int:
        loop = asyncio.get_running_loop()
        transport = Transport.parse(protocol)
        if transport is Transport.UDP:
            endpoint = UdpEndpoint(self)
            sock, _ = await loop.create_datagram_endpoint(
                _returning(endpoint), local_addr=(host, port)
            )
            _grow_buffers(sock)
            self._udp[Transport.UDP] = endpoint
            self._udp_sockets.append(sock)
            bound = int(sock.get_extra_info("sockname")[1])
        else:
            server = await loop.create_server(
                lambda: TcpConnection(self), host, port, reuse_address=True
            )
            self._servers.append(server)
            bound = int(server.sockets[0].getsockname()[1])
        self.listening_points.append(NetInterface(_advertised(host), bound, transport))
        return bound

    def _reset_listeners(self) -> None:
        self._servers.clear()
        self._udp_sockets.clear()
        self._udp.clear()
        self.listening_points.clear()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for flow in list(self._flows.values()):
            if isinstance(flow, TcpConnection):
                flow.close()
        for sock in self._udp_sockets:
            sock.close()
        for task in list(self._tasks):
            task.cancel()
        if self._wakeup is not None:
            self._wakeup.cancel()

    # -- flows

    def flow_opened(self, flow: Flow) -> None:
        self._flows[flow.id] = flow

    def flow_closed(self, flow: Flow) -> None:
        if self._flows.get(flow.id) is flow:
            del self._flows[flow.id]

    async def _flow_to(self, destination: NetInterface) -> Flow:
        if destination.transport is Transport.UDP:
            endpoint = self._udp.get(Transport.UDP)
            if endpoint is None:
                raise OSError("no UDP listening point")
            return endpoint.flow_to(destination.host, destination.port)
        existing = self._flows.get(str(destination))
        if existing is not None:
            return existing
        if destination.transport is not Transport.TCP:
            raise OSError(f"transport {destination.transport.value} is not supported yet")
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: TcpConnection(self), destination.host, destination.port),
            timeout=5.0,
        )
        return protocol

    # -- input from the transport shells

    def on_datagram(self, data: bytes, flow: Flow) -> None:
        if len(data) <= 4 and not data.strip():
            return  # a keep-alive
        self.stats["received"] += 1
        try:
            message = parse(data)
        except ParseError as error:
            self._answer_garbage(data, error, flow)
            return
        if len(data) > self.max_message_size:
            self.stats["too_large"] += 1
            if isinstance(message, Request) and message.method != "ACK":
                self._send(flow, make_response(message, 513, to_tag=_tag()).serialize())
            return
        self.on_message(message, flow)

    def on_stream_error(self, error: ParseError, flow: Flow) -> None:
        self.stats["malformed"] += 1
        is_ack = any(k == "cseq" and v.rstrip().endswith(" ACK") for k, v in error.fields)
        if not is_ack:
            self._send(flow, error_response(error, to_tag=_tag()).serialize())

    def _answer_garbage(self, data: bytes, error: ParseError, flow: Flow) -> None:
        if data[:4].upper() == b"SIP/":
            self.stats["malformed_responses_dropped"] += 1
            return
        if data[:4] == b"ACK ":
            self.stats["malformed_acks_dropped"] += 1  # an ACK is never answered
            return
        self.stats["malformed"] += 1
        self._send(flow, error_response(error, to_tag=_tag()).serialize())

    def on_message(self, message: Request | Response, flow: Flow) -> None:
        try:
            if isinstance(message, Request):
                self._on_request(message, flow)
            else:
                self._on_response(message, flow)
        except ParseError as error:  # a header read late (Contact, Route...) was bad
            if isinstance(message, Request) and message.method != "ACK":
                error.fields = [(f.key, f.value) for f in message.fields]
                self._send(flow, error_response(error, to_tag=_tag()).serialize())
            self.stats["malformed"] += 1

    # -- requests

    def _on_request(self, request: Request, flow: Flow) -> None:
        self._stamp_via(request, flow)
        now = self._clock()
        method = request.method
        if method == "ACK":
            ctx = self._server_txs.get(server_key(request))
            if ctx is not None and ctx.tx.matches(request):
                self._apply_server(ctx, ctx.tx.receive_request(request, now))
            else:
                self._spawn(self._forward_ack(request, flow))
            return
        if method == "CANCEL":
            self._on_cancel(request, flow, now)
            return
        key = server_key(request)
        ctx = self._server_txs.get(key)
        if ctx is not None and ctx.tx.matches(request):
            self.stats["retransmissions"] += 1
            self._apply_server(ctx, ctx.tx.receive_request(request, now))
            return
        reliable = flow.transport.reliable
        tx: ServerInviteTransaction | ServerNonInviteTransaction
        tx = (
            ServerInviteTransaction(request, reliable=reliable)
            if method == "INVITE"
            else ServerNonInviteTransaction(request, reliable=reliable)
        )
        ctx = ServerContext(tx, flow)
        self._server_txs[key] = ctx
        self._apply_server(ctx, tx.start(now))
        if method not in self.methods:
            self._respond(ctx, 405, headers=[("Allow", ", ".join(sorted(self.methods)))])
        elif request.max_forwards == 0 and method != "OPTIONS":
            self._respond(ctx, 483)
        elif self._looped(request):
            self._respond(ctx, 482)
        else:
            self.stats["to_processor"] += 1
            self._spawn(self._process(ctx))

    def _stamp_via(self, request: Request, flow: Flow) -> None:
        """received and rport on the top Via (RFC 3261 section 18.2.1, RFC 3581)."""
        via = request.top_via
        host, port = flow.remote
        changed = via
        if via.wants_rport:
            changed = changed.with_param("rport", str(port))
        if via.host.strip("[]") != host or via.wants_rport:
            changed = changed.with_param("received", host)
        if changed is not via:
            request.set_top_via(changed)

    def _looped(self, request: Request) -> bool:
        """RFC 3261 section 16.3 step 4: our own Via with this request's loop hash."""
        if not any("z9hG4bKsg" in value for value in request.get_all("Via")):
            return False  # no Via of ours at all: the common case, decided without parsing
        ours = self._branch_hash(request)
        for via in request.vias[1:]:
            branch = via.branch or ""
            if (
                branch.startswith("z9hG4bKsg")
                and branch.endswith(ours)
                and self._is_our_address(via.host, via.port)
            ):
                return True
        return False

    def _is_our_address(self, host: str, port: int | None) -> bool:
        return (
            any(lp.host == host and (port or 5060) == lp.port for lp in self.listening_points)
            or host in self.external_addrs
        )

    async def _process(self, ctx: ServerContext) -> None:
        request = ctx.tx.request
        flow = ctx.flow
        try:
            result = await self.processor.process_message(
                self._message_request(request.copy(), flow)
            )
        except Exception as error:
            log.warning("processor failed: %s", error)
            self.stats["processor_errors"] += 1
            self._respond(ctx, 503, "Service Unavailable (Processor Failed)")
            return
        out = result.message
        if isinstance(out, Response):
            self._send_response(ctx, out)
        elif result.metadata.get(META_DROP):
            self._respond(ctx, 500, "Server Internal Error (Nothing To Do)")
        elif ctx.cancelled:
            self._respond(ctx, 487)
        else:
            await self._forward(ctx, out, result.metadata)

    def _message_request(self, message: Request | Response, flow: Flow) -> MessageRequest:
        method = message.method if isinstance(message, Request) else message.cseq.method
        return MessageRequest(
            ref=message.call_id,
            edge_port_ref=self.ref,
            method=method,
            sender=NetInterface(flow.remote[0], flow.remote[1], flow.transport),
            listening_points=self.listening_points,
            message=message,
            external_addrs=self.external_addrs,
            localnets=self.localnets,
            metadata={META_FLOW: flow.id},
        )

    async def _forward(
        self, ctx: ServerContext | None, request: Request, metadata: dict[str, str]
    ) -> None:
        """Send a request onward: our Via on top, a client transaction unless it is an ACK."""
        try:
            destination = await self._destination(request, metadata)
            preferred = self._flows.get(metadata.get(META_TARGET_FLOW, ""))
            flow = preferred or await self._flow_to(destination)
            if preferred is not None:
                destination = NetInterface(
                    preferred.remote[0], preferred.remote[1], preferred.transport
                )
            branch = f"z9hG4bKsg{secrets.token_hex(6)}{self._branch_hash(request)}"
            via = self._via(destination, branch)
        except (OSError, ValueError, TimeoutError) as error:
            log.info("cannot reach next hop: %s", error)
            self.stats["next_hop_unreachable"] += 1
            if ctx is not None:
                self._respond(ctx, 503, "Service Unavailable (Next Hop Unreachable)")
            return
        request.add("Via", via, first=True)
        if request.method == "ACK":
            self._send(flow, request.serialize())
            return
        if ctx is not None and (ctx.cancelled or ctx.tx.state is State.TERMINATED):
            return
        reliable = flow.transport.reliable
        tx: ClientInviteTransaction | ClientNonInviteTransaction
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, reliable=reliable)
        else:
            tx = ClientNonInviteTransaction(request, reliable=reliable)
        cctx = ClientContext(tx, flow, ctx)
        self._client_txs[client_key(request)] = cctx
        if ctx is not None:
            ctx.client = cctx
        if request.method == "INVITE":
            self._arm_timer_c(cctx)
        self._apply_client(cctx, tx.start(self._clock()))

    async def _forward_ack(self, request: Request, flow: Flow) -> None:
        """The ACK of a 2xx: no transaction, through the processor, onward (RFC 3261 16.6)."""
        try:
            result = await self.processor.process_message(self._message_request(request, flow))
        except Exception as error:
            log.info("processor failed on ACK: %s", error)
            return
        if isinstance(result.message, Request) and not result.metadata.get(META_DROP):
            await self._forward(None, result.message, result.metadata)

    async def _destination(self, request: Request, metadata: dict[str, str]) -> NetInterface:
        """Where the processor said, else the top Route or the Request-URI (A/AAAA lookup,
        no SRV yet: RFC 3263 is not applied)."""
        text = metadata.get(META_DESTINATION)
        if text:
            destination = parse_flow_id(text)
        else:
            routes = request.routes
            target = routes[0].sip_uri if routes else request.uri
            if not isinstance(target, SipUri):
                raise ValueError(f"cannot route to {target}")
            transport = Transport.parse(target.transport) if target.transport else Transport.UDP
            port = target.port or (5061 if transport is Transport.TLS else 5060)
            destination = NetInterface((target.maddr or target.host).strip("[]"), port, transport)
        return await self._resolved(destination)

    async def _resolved(self, destination: NetInterface) -> NetInterface:
        """An address the sockets can take: names looked up (A/AAAA), and of a family
        that we listen on. Raises OSError otherwise, never lets a name reach sendto."""
        host = destination.host
        family = self._family(destination.transport)
        if _is_ip(host):
            if ipaddress.ip_address(host).version != (6 if family == socket.AF_INET6 else 4):
                raise OSError(f"no {destination.transport.value} listening point for {host}")
            return destination
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, destination.port, family=family, type=socket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(f"{host} has no address")
        return NetInterface(str(infos[0][4][0]), destination.port, destination.transport)

    def _family(self, transport: Transport) -> int:
        """The address family of our listening point for a transport (IPv4 by default)."""
        lp = next((p for p in self.listening_points if p.transport is transport), None)
        if lp is not None and ":" in lp.host:
            return socket.AF_INET6
        return socket.AF_INET

    def _via(self, destination: NetInterface, branch: str) -> str:
        lp = next((p for p in self.listening_points if p.transport is destination.transport), None)
        if lp is None:
            raise OSError(f"no {destination.transport.value} listening point")
        host = lp.host
        if self.external_addrs and not self._is_local(destination.host):
            host = self.external_addrs[0].split(":")[0]
        if ":" in host:
            host = f"[{host}]"
        rport = ";rport" if destination.transport is Transport.UDP else ""
        return f"SIP/2.0/{destination.transport.via_name} {host}:{lp.port};branch={branch}{rport}"

    def _is_local(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or any(ip in net for net in self._localnets)

    def _branch_hash(self, request: Request) -> str:
        """A hash of what a looping request keeps (RFC 3261 section 16.6 step 8), less the top Via."""
        text = "|".join(
            (
                str(request.uri),
                request.from_.tag or "",
                request.to.tag or "",
                request.call_id,
                str(request.cseq.seq),
                ",".join(request.get_all("Proxy-Require")),
            )
        )
        return hashlib.blake2s(text.encode("utf-8", "surrogateescape"), digest_size=5).hexdigest()

    def _on_cancel(self, cancel: Request, flow: Flow, now: float) -> None:
        key = server_key(cancel)
        existing = self._server_txs.get(key)
        if existing is not None:
            self._apply_server(existing, existing.tx.receive_request(cancel, now))
            return
        tx = ServerNonInviteTransaction(cancel, reliable=flow.transport.reliable)
        ctx = ServerContext(tx, flow)
        self._server_txs[key] = ctx
        tx.start(now)
        invite = self._server_txs.get(server_key(cancel, method="INVITE"))
        if invite is None or not isinstance(invite.tx, ServerInviteTransaction):
            self._respond(ctx, 481)
            return
        self._respond(ctx, 200)
        if invite.tx.state is not State.PROCEEDING or invite.cancelled:
            return
        invite.cancelled = True
        client = invite.client
        if client is None:
            self._respond(invite, 487)  # the processor has not answered yet
        elif client.provisional:
            self._cancel_downstream(client)
        else:
            client.cancel_pending = True  # RFC 3261 section 9.1: wait for a provisional

    def _cancel_downstream(self, client: ClientContext) -> None:
        request = client.tx.request
        cancel = build_cancel(request)
        tx = ClientNonInviteTransaction(cancel, reliable=client.flow.transport.reliable)
        cctx = ClientContext(tx, client.flow, None)
        self._client_txs[client_key(cancel)] = cctx
        self._apply_client(cctx, tx.start(self._clock()))
        server = client.server
        if server is not None:
            asyncio.get_running_loop().call_later(self.cancel_grace, self._give_up_cancel, server)

    def _give_up_cancel(self, server: ServerContext) -> None:
        if server.client is not None and server.client.timer_c is not None:
            server.client.timer_c.cancel()
        if server.tx.state is State.PROCEEDING:
            self._respond(server, 487)

    # -- responses

    def _on_response(self, response: Response, flow: Flow) -> None:
        via = response.top_via
        if not self._is_our_address(via.host, via.port):
            self.stats["responses_not_ours"] += 1
            return
        cctx = self._client_txs.get(client_key(response))
        if cctx is None:
            self._relay_stray(response)
            return
        self._apply_client(cctx, cctx.tx.receive_response(response, self._clock()))

    def _arm_timer_c(self, cctx: ClientContext) -> None:
        """Timer C (RFC 3261 section 16.6 step 11): an INVITE that rings for ever is cancelled.
        Armed when the INVITE goes out, re-armed by every provisional, stopped by a final."""
        if cctx.timer_c is not None:
            cctx.timer_c.cancel()
        cctx.timer_c = asyncio.get_running_loop().call_later(self.timer_c, self._on_timer_c, cctx)

    def _on_timer_c(self, cctx: ClientContext) -> None:
        cctx.timer_c = None
        if cctx.tx.state not in (State.CALLING, State.PROCEEDING):
            return
        self.stats["timer_c"] += 1
        if cctx.provisional:
            self._cancel_downstream(cctx)  # the callee answers 487, or we do after a grace
        elif cctx.server is not None:
            self._respond(cctx.server, 408)

    def _on_client_response(self, cctx: ClientContext, response: Response) -> None:
        if cctx.timer_c is not None:
            if response.status < 200:
                self._arm_timer_c(cctx)
            else:
                cctx.timer_c.cancel()
                cctx.timer_c = None
        if response.status < 200:
            cctx.provisional = True
            if cctx.cancel_pending:
                cctx.cancel_pending = False
                self._cancel_downstream(cctx)
        server = cctx.server
        if server is None:
            return  # the answer to our own CANCEL
        response.pop_first_value("Via")
        if not getattr(self.processor, "handles_responses", True) and server.relay is None:
            self._send_response(server, response)
            return
        previous = server.relay
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        server.relay = future
        self._spawn(self._relay(server, response, previous, future))

    async def _relay(
        self,
        server: ServerContext,
        response: Response,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
    ) -> None:
        """Through the processor and upstream, after the responses before it."""
        try:
            try:
                result: MessageResponse | None = await self.processor.process_message(
                    self._message_request(response, server.flow)
                )
            except Exception as error:
                log.info("processor failed on a response: %s", error)
                result = None
            if previous is not None:
                await previous
            out = result.message if result is not None else response
            if isinstance(out, Response):
                self._send_response(server, out)
        finally:
            done.set_result(None)

    def _relay_stray(self, response: Response) -> None:
        """A response with no transaction (a 2xx retransmitted): by the next Via (RFC 3261 18.2.2)."""
        response.pop_first_value("Via")
        if "Via" not in response:
            return
        via = response.top_via
        transport = (
            Transport.parse(via.transport)
            if via.transport.lower() in ("udp", "tcp", "tls")
            else Transport.UDP
        )
        host = via.received or via.host.strip("[]")
        port = via.rport or via.port or 5060
        self.stats["stray_responses"] += 1
        self._spawn(self._send_to(NetInterface(host, port, transport), response.serialize()))

    async def _send_to(self, destination: NetInterface, data: bytes) -> None:
        try:
            flow = await self._flow_to(await self._resolved(destination))
        except (OSError, ValueError, TimeoutError) as error:
            log.info("cannot send to %s: %s", destination, error)
            return
        self._send(flow, data)

    # -- sending upstream

    def _respond(
        self,
        ctx: ServerContext,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, object]] | None = None,
    ) -> None:
        response = make_response(
            ctx.tx.request, status, reason, to_tag=_tag(), headers=headers or []
        )
        self._send_response(ctx, response)

    def _send_response(self, ctx: ServerContext, response: Response) -> None:
        if ctx.tx.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status == 100 and isinstance(ctx.tx, ServerInviteTransaction):
            return  # we sent our own 100 Trying already
        self._apply_server(ctx, ctx.tx.send_response(response, self._clock()))

    # -- effects and timers

    def _apply_server(self, ctx: ServerContext, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if not self._send(ctx.flow, effect.message.serialize()):
                    self._apply_server(ctx, ctx.tx.transport_error())  # ends the transaction
                    return
            elif isinstance(effect, Terminated):
                key = server_key(ctx.tx.request)
                if self._server_txs.get(key) is ctx:
                    del self._server_txs[key]
        self._schedule(ctx, ctx.tx)

    def _apply_client(self, cctx: ClientContext, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if not self._send(cctx.flow, effect.message.serialize()):
                    # 503 upstream and the end of this transaction (RFC 3261 section 16.9)
                    self._apply_client(cctx, cctx.tx.transport_error())
                    return
            elif isinstance(effect, Deliver):
                assert isinstance(effect.message, Response)
                self._on_client_response(cctx, effect.message)
            elif isinstance(effect, Timeout | TransportFailed):
                server = cctx.server
                if server is not None:
                    status = 408 if isinstance(effect, Timeout) else 503
                    self._respond(server, status)
            elif isinstance(effect, Terminated):
                key = client_key(cctx.tx.request)
                if self._client_txs.get(key) is cctx:
                    del self._client_txs[key]
        self._schedule(cctx, cctx.tx)

    def _schedule(self, ctx: ServerContext | ClientContext, tx: Transaction) -> None:
        deadline = tx.next_deadline()
        if deadline is None:
            return
        heapq.heappush(self._timers, (deadline, next(self._seq), ctx))
        if deadline < self._wakeup_at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            loop = asyncio.get_running_loop()
            self._wakeup_at = deadline
            self._wakeup = loop.call_later(max(0.0, deadline - self._clock()), self._on_timers)

    def _on_timers(self) -> None:
        self._wakeup = None
        self._wakeup_at = float("inf")
        now = self._clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, ctx = heapq.heappop(timers)
            tx = ctx.tx
            if tx.state is State.TERMINATED or tx.next_deadline() != deadline:
                continue  # stale entry: the machine moved on
            if isinstance(ctx, ServerContext):
                self._apply_server(ctx, tx.handle_timer(now))
            else:
                self._apply_client(ctx, tx.handle_timer(now))
        if timers and self._wakeup is None:
            loop = asyncio.get_running_loop()
            self._wakeup_at = timers[0][0]
            self._wakeup = loop.call_later(max(0.0, timers[0][0] - now), self._on_timers)

    def _send(self, flow: Flow, data: bytes) -> bool:
        """Hand bytes to a transport shell; False (logged, counted) when the socket refuses."""
        try:
            flow.send(data)
        except (OSError, ValueError, RuntimeError) as error:
            self.stats["send_errors"] += 1
            log.info("cannot send to %s: %s", flow.id, error)
            return False
        return True

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Every task's exception is retrieved: a bug is logged and counted, never left behind."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.stats["task_errors"] += 1
            log.error("edgeport task failed", exc_info=error)


UDP_BUFFER = 4 * 1024 * 1024


def _grow_buffers(transport: asyncio.DatagramTransport) -> None:
    """Bursts of datagrams overflow the default socket buffers while Python is busy."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
        except OSError:
            log.info("cannot grow the UDP buffers to %d bytes", UDP_BUFFER)


def _returning(endpoint: UdpEndpoint) -> Callable[[], UdpEndpoint]:
    return lambda: endpoint


def _tag() -> str:
    return secrets.token_hex(5)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _advertised(bind_host: str) -> str:
    """The address to put in Via and Record-Route for a bind address."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent by connect()
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
