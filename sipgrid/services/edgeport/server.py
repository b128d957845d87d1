"""The EdgePort: the proxy core (core.py) run over real sockets.

This module opens the listening points (UDP, TCP, TLS, WS, WSS; IPv4 and IPv6), keeps
the table of open connections, and carries out what the core asks. What every message
asks (transmit bytes, call the processor, wake the core at its next deadline) is done by
the compiled carrier (carrier.py); the rest (resolve a target, open or close a
connection, hand a message to another worker, log and publish call events) here. Every
decision about SIP is the core's.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import resource
import socket
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from prometheus_client.core import Metric

from sipgrid.api.types import NetInterface, Processor, Transport
from sipgrid.config import ConfigError
from sipgrid.sip import ParseError, Request, Response, Target, host_of

from ..events import HANGUP_CAUSES, NatsEvents, events_from, iso_now
from ..grpc_clients import GrpcProcessor
from ..metrics import from_wire, to_wire
from ..settings import Settings
from .carrier import Carrier, UdpShell
from .config import EdgePortConfig
from .core import (
    CANCEL_GRACE,
    TIMER_C,
    Action,
    Answered,
    CallEvent,
    CloseFlow,
    CoreSettings,
    EdgePortCore,
    Registered,
    Resolve,
    Transmit,
)
from .dns import Resolver
from .http import HttpEndpoint
from .pages import WEB_DIR
from .tls import client_context, server_context
from .transports import Connection, StreamShell
from .websocket import WebSocketShell
from .workers import FAILED, METRICS, METRICS_ASK, RECEIVED, TRANSMIT, Handoffs, owner

log = logging.getLogger("sipgrid.edgeport")

UDP_BUFFER = 4 * 1024 * 1024
REGISTERED_IDLE = 3900.0  # seconds: the longest registration (3600 s) and some
CONNECT_TIMEOUT = 5.0
HANDED_SEND_KEPT = CONNECT_TIMEOUT + 5.0  # seconds a failure of a handed send may take
METRICS_WAIT = 1.0  # seconds worker 0 waits for the other workers' metrics


@dataclass(frozen=True, slots=True)
class _HandedSend:
    """The token of a send that another worker handed this one (worker 0)."""

    worker: int
    number: bytes


class EdgePort:
    def __init__(
        self,
        config: EdgePortConfig,
        processor: Processor,
        *,
        clock: Callable[[], float] = time.monotonic,
        timer_c: float = TIMER_C,
        cancel_grace: float = CANCEL_GRACE,
        data_dir: Path | None = None,
        tls_names: list[str] | None = None,
        dns_servers: str | None = None,
        phone_page: bool = False,
        events: NatsEvents | None = None,
        settings: Settings | None = None,
        banned: Callable[[str], bool] | None = None,
    ) -> None:
        """``banned``: whether the processor in this process has banned a source address
        (the all-in-one's guard), so that dialogs followed here refuse it too."""
        env = settings or Settings.load()
        self._banned = banned
        self.config = config
        # the browser phone beside WSS, from SIPGRID_WEB_DIR or the checkout's web/
        self._phone_page = (env.web_dir or WEB_DIR) if phone_page else None
        # call and registration events to NATS (NATS_URL, or Routr's NATS_PUBLISHER_*)
        self.events = events if events is not None else events_from(env)
        spec = config.spec
        self.ref = config.ref
        self.processor = processor
        self.max_message_size = spec.max_message_size
        self.listening_points: list[NetInterface] = []
        self._clock = clock
        self._timer_c = timer_c
        self._cancel_grace = cancel_grace
        self._data_dir = data_dir or env.data_dir
        self._tls_names = tls_names or []
        self._dns_servers = env.dns_servers if dns_servers is None else dns_servers
        self._udp_sockets: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._websockets: list[WebSocketShell] = []
        self._connections: dict[NetInterface, Connection] = {}
        self._errors: Counter[str] = Counter()
        # the per-message path, compiled (carrier.py): it shares the connections and counters
        self._carrier = Carrier(self, processor, clock, self._connections, self._errors)
        self._connecting: dict[NetInterface, asyncio.Future[Connection | None]] = {}
        self._client_tls: ssl.SSLContext | None = None
        self._server_tls: ssl.SSLContext | None = None
        self._origins: dict[int, asyncio.Future[Response | None]] = {}
        self.core: EdgePortCore | None = None
        self.resolver: Resolver | None = None
        # connections: when each last brought a whole SIP message, and which registered
        self._activity: dict[NetInterface, float] = {}
        self._registered: set[NetInterface] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.http: HttpEndpoint | None = None
        # one of several worker processes on one port (SIPGRID_WORKERS): see workers.py
        self.worker = env.worker_place()
        self._handoffs: Handoffs | None = None
        # what this worker handed worker 0 to send, by number, until a failure is told
        # back or HANDED_SEND_KEPT seconds pass: (when, the Transmit's token)
        self._sent_away: OrderedDict[bytes, tuple[float, object]] = OrderedDict()
        self._handoff_numbers = itertools.count(1)
        # worker 0: the other workers' metrics it asked for, by worker and number
        self._metrics_asked: dict[tuple[int, bytes], asyncio.Future[bytes]] = {}

    @property
    def stats(self) -> Counter[str]:
        return self.core.stats + self._errors if self.core is not None else self._errors

    # -- lifecycle

    async def start(self) -> None:
        """Listen on every transport of the spec. Transports given port 0 share one free
        port that the system picks, UDP and one stream transport (TCP, TLS, WS, WSS) on
        it, the other stream transports on ports of their own (read them back from
        ``listening_points``)."""
        if self.worker is not None and any(not t.port for t in self.config.spec.transport):
            raise ConfigError(
                f"edgeport {self.ref}: field spec.transport.port: {self.worker.count} workers "
                "share the SIP port: give every transport a port of its own (not 0)"
            )
        for attempt in range(20):
            shared = 0
            stream_on_shared = False
            try:
                for t in self.config.spec.transport:
                    host = t.bind_addr or self.config.spec.bind_addr
                    transport = Transport.parse(t.protocol)
                    stream = transport is not Transport.UDP
                    if stream and self.worker is not None and self.worker.index != 0:
                        # connections are worker 0's; this worker still names the point
                        # in the Vias and Record-Routes of what it hands worker 0 to send
                        lp = NetInterface(_advertised(host), t.port, transport)
                        self.listening_points.append(lp)
                        continue
                    port = t.port or (0 if stream and stream_on_shared else shared)
                    bound = await self._listen(host, port, transport)
                    if not t.port:
                        shared = shared or bound
                        stream_on_shared = stream_on_shared or (stream and bound == shared)
                break
            except OSError:
                await self._close_listeners()
                if not shared or attempt == 19:
                    raise
        spec = self.config.spec
        transports = [lp.transport for lp in self.listening_points]
        self.resolver = Resolver(
            transports,
            self._dns_servers,
            ipv6=any(":" in lp.host for lp in self.listening_points),
        )
        self.core = EdgePortCore(
            CoreSettings(
                ref=self.ref,
                listening_points=self.listening_points,
                methods=frozenset(spec.methods),
                external_addrs=spec.external_addrs,
                localnets=spec.localnets,
                max_message_size=spec.max_message_size,
                handles_responses=self.processor.handles_responses,
                timer_c=self._timer_c,
                cancel_grace=self._cancel_grace,
                requests_per_second=spec.limits.requests_per_second,
                max_transactions=spec.limits.max_transactions,
                max_processor_wait=spec.limits.max_processor_wait,
                events=self.events is not None,
                worker=self.worker.index if self.worker is not None else 0,
                connections_elsewhere=self.worker is not None and self.worker.index != 0,
            )
        )
        # a processor that can say which of its routes nothing stands in (Connect, sipgrid's
        # Dispatcher in process or watched) may let us follow dialogs ourselves
        self.core.untouched_route = getattr(self.processor, "untouched_route", None)
        self.core.banned = self._banned
        self._carrier.core = self.core
        for flow in self._connections:
            self.core.flow_opened(flow)
        watch_descriptors(asyncio.get_running_loop(), self._errors)
        if spec.limits.idle_timeout:
            self._sweeper = asyncio.ensure_future(self._sweep(spec.limits.idle_timeout))
        if spec.http.bind_addr:
            # every worker keeps the figures (histograms included); worker 0 serves them
            http_host, _, http_port = spec.http.bind_addr.rpartition(":")
            self.http = HttpEndpoint(
                self, http_host.strip("[]") or "0.0.0.0", int(http_port), self.ready
            )
            self._carrier.http = self.http
            if self.worker is None or self.worker.index == 0:
                await self.http.start()
            if self.worker is not None and self.worker.index == 0:
                self.http.others = self._workers_metrics
                self.http.workers = self.worker.count
        if self.events is not None:
            await self.events.start()
        if self.worker is not None:  # last: the supervisor takes it for "up"
            self._handoffs = Handoffs(self.worker, self._handed)
            self._handoffs.open()
            self._carrier.handing_off = True
            self._carrier.worker_0 = self.worker.index == 0

    async def request(self, request: Request, destination: NetInterface) -> Response | None:
        """Send a request of our own (an OPTIONS probe) and wait for its final answer:
        None when none came (Timer F, a transport failure, nowhere to send it)."""
        if self.core is None:
            return None
        origin, actions = self.core.originate(request, destination, self._clock())
        answer: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self._origins[origin] = answer
        try:
            self._run(actions)
            return await answer
        finally:
            self._origins.pop(origin, None)

    def contact_point(self, transport: Transport) -> NetInterface | None:
        """Where others reach us over ``transport``: the listening point, with the first
        external address when one is configured (behind NAT), for a Contact of ours."""
        for lp in self.listening_points:
            if lp.transport is transport:
                external = self.config.spec.external_addrs
                host = host_of(external[0]) if external else lp.host
                if host in ("0.0.0.0", "::"):
                    host = _advertised(host)
                return NetInterface(host, lp.port, transport)
        return None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def ready(self) -> bool:
        """Listening, and the processor reachable (a gRPC health check when it is remote)."""
        if self.core is None or not self.listening_points:
            return False
        if isinstance(self.processor, GrpcProcessor):
            return await self.processor.healthy()
        return True

    async def _listen(self, host: str, port: int, transport: Transport) -> int:
        loop = asyncio.get_running_loop()
        if transport is Transport.UDP:
            shell = UdpShell(self._carrier)
            sock, _ = await loop.create_datagram_endpoint(
                lambda: cast(asyncio.DatagramProtocol, shell),  # one by duck typing
                local_addr=(host, port),
                reuse_port=self.worker is not None,  # the workers share the port
            )
            _grow_buffers(sock)
            self._udp_sockets.append(sock)
            bound = int(sock.get_extra_info("sockname")[1])
            lp = NetInterface(_advertised(host), bound, transport)
            self._carrier.udp.append((":" in lp.host, shell))
        elif transport in (Transport.TCP, Transport.TLS):
            context = self._tls() if transport is Transport.TLS else None
            server = await loop.create_server(
                lambda: StreamShell(self, transport), host, port, reuse_address=True, ssl=context
            )
            self._servers.append(server)
            bound = int(server.sockets[0].getsockname()[1])
            lp = NetInterface(_advertised(host), bound, transport)
        elif transport in (Transport.WS, Transport.WSS):
            context = self._tls() if transport is Transport.WSS else None
            page = self._phone_page if transport is Transport.WSS else None
            shell_ws = WebSocketShell(self, transport, host, port, context, phone_page=page)
            bound = await shell_ws.start()
            self._websockets.append(shell_ws)
            lp = NetInterface(_advertised(host), bound, transport)
        else:
            raise OSError(f"transport {transport.value} is not supported")
        self.listening_points.append(lp)
        return bound

    def _tls(self) -> ssl.SSLContext:
        if self._server_tls is None:
            names = [*self._tls_names, "localhost", socket.gethostname()]
            names += [host_of(a) for a in self.config.spec.external_addrs]
            bind = self.config.spec.bind_addr
            names += [_advertised(bind), "127.0.0.1", "::1"]
            self._server_tls = server_context(
                self.config.spec.security_context, self._data_dir, names
            )
        return self._server_tls

    async def drain(self, seconds: float) -> None:
        """Stop taking new dialogs (503 with Retry-After: a load balancer or the caller
        tries elsewhere) and wait up to ``seconds`` for the calls and transactions in
        progress to end; in-dialog requests (ACK, BYE, re-INVITE) go on meanwhile."""
        core = self.core
        if core is None or seconds <= 0:
            return
        core.settings.draining = True
        if core.busy or core.calls_in_progress:
            log.warning(
                "stopping: new calls get 503; waiting up to %.0f s for %d calls and %d "
                "transactions in progress",
                seconds,
                core.calls_in_progress,
                core.busy,
            )
        deadline = time.monotonic() + seconds
        while (core.busy or core.calls_in_progress) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if core.busy or core.calls_in_progress:
            log.warning(
                "stopping with %d calls and %d transactions still in progress",
                core.calls_in_progress,
                core.busy,
            )

    async def stop(self) -> None:
        if self._handoffs is not None:
            self._handoffs.close()
        await self._close_listeners()
        for connection in list(self._connections.values()):
            connection.close()
        self._carrier.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.http is not None:
            await self.http.stop()
        if self.events is not None:
            await self.events.stop()

    async def _close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        for sock in self._udp_sockets:
            sock.close()
        for ws in self._websockets:
            await ws.stop()
        self._servers.clear()
        self._udp_sockets.clear()
        self._carrier.udp.clear()
        self._websockets.clear()
        self.listening_points.clear()

    # -- from the shells

    def datagram_received(self, data: bytes, flow: NetInterface) -> None:
        """A WebSocket message (a UDP shell reports to the carrier)."""
        if self.core is None:
            return
        self._activity[flow] = self._clock()
        if data[:9] == b"REGISTER ":
            self._registered.add(flow)
        self._carrier.received(data, flow)

    def message_received(self, message: Request | Response, flow: NetInterface) -> None:
        if self.core is None:
            return
        now = self._clock()
        self._activity[flow] = now
        if isinstance(message, Request) and message.method == "REGISTER":
            self._registered.add(flow)
        if self._handoffs is not None and self._elsewhere(message.serialize(), flow):
            return
        self._run(self.core.receive_message(message, flow, now))

    def stream_failed(self, error: ParseError, flow: NetInterface) -> None:
        if self.core is not None:
            self._run(self.core.stream_error(error, flow))

    def connection_opened(self, flow: NetInterface, connection: Connection) -> None:
        cap = self.config.spec.limits.max_connections_per_source
        if cap and sum(1 for f in self._connections if f.host == flow.host) >= cap:
            self._errors["connections_refused"] += 1
            connection.close()
            return
        self._connections[flow] = connection
        self._activity[flow] = self._clock()
        if self.core is not None:
            self.core.flow_opened(flow)

    def connection_closed(self, flow: NetInterface, connection: Connection) -> None:
        if self._connections.get(flow) is connection:
            del self._connections[flow]
            self._activity.pop(flow, None)
            self._registered.discard(flow)
            if self.core is not None:
                self.core.flow_closed(flow)

    async def _sweep(self, idle: float) -> None:
        """Close connections that bring no whole SIP message for ``idle`` seconds (junk,
        half-sent messages, forgotten sockets); one that registered may stay quiet as long
        as a registration lasts (keep-alive pings do not count as messages)."""
        while True:
            await asyncio.sleep(max(0.2, idle / 4))
            now = self._clock()
            for flow, connection in list(self._connections.items()):
                limit = REGISTERED_IDLE if flow in self._registered else idle
                if now - self._activity.get(flow, now) > limit:
                    self._errors["idle_connections_closed"] += 1
                    connection.close()

    # -- between workers

    def _elsewhere(self, data: bytes, flow: NetInterface) -> bool:
        """A message that another worker owns (workers.py): handed to that worker."""
        assert self._handoffs is not None
        place = self._handoffs.place
        to = owner(data, place.count)
        if to is None or to == place.index or to >= place.count:
            return False  # ours, garbage, or a branch of no worker of ours (a stray)
        self._count_handoff(self._handoffs.send(to, RECEIVED, [flow], data))
        return True

    def _handed(self, kind: bytes, where: list[NetInterface], data: bytes, sender: int) -> None:
        if kind in (METRICS_ASK, METRICS):
            self._metrics_handed(kind, data, sender)
            return
        self._errors["handed_in"] += 1
        if kind == RECEIVED and self.core is not None and where:
            self._run(self.core.receive_datagram(data, where[0], self._clock()))
        elif kind == TRANSMIT and where:
            number, _, message = data.partition(b"\n")
            flow = where[1] if len(where) > 1 else None
            self._transmit(Transmit(message, where[0], flow, _HandedSend(sender, number)))
        elif kind == FAILED:
            sent = self._sent_away.pop(data, None)
            if sent is not None:
                self._failed(sent[1])

    async def _workers_metrics(self) -> list[list[Metric]]:
        """Worker 0, as its metrics page is read: the other workers' metric families, of
        those that answer within METRICS_WAIT seconds."""
        handoffs = self._handoffs
        if handoffs is None:
            return []
        loop = asyncio.get_running_loop()
        number = str(next(self._handoff_numbers)).encode()
        asked: dict[tuple[int, bytes], asyncio.Future[bytes]] = {}
        for index in range(1, handoffs.place.count):
            asked[index, number] = self._metrics_asked[index, number] = loop.create_future()
            handoffs.send(index, METRICS_ASK, [], number)
        try:
            await asyncio.wait(asked.values(), timeout=METRICS_WAIT)
        finally:
            for key in asked:
                self._metrics_asked.pop(key, None)
        found = []
        for (index, _), answer in asked.items():
            if not answer.done():
                log.warning(
                    "worker %d gave no metrics in %s s: left off the page", index, METRICS_WAIT
                )
                continue
            try:
                found.append(from_wire(answer.result()))
            except ValueError as error:
                log.warning("worker %d's metrics: %s", index, error)
        return found

    def _metrics_handed(self, kind: bytes, data: bytes, sender: int) -> None:
        """A worker asked by worker 0 for its figures answers; worker 0 takes the answer."""
        if kind == METRICS_ASK:
            if self._handoffs is not None:
                figures = to_wire(self.http.families() if self.http is not None else [])
                self._handoffs.send(sender, METRICS, [], data + b"\n" + figures)
            return
        number, _, figures = data.partition(b"\n")
        answer = self._metrics_asked.pop((sender, number), None)
        if answer is not None and not answer.done():
            answer.set_result(figures)

    def _hand_to_worker_0(self, action: Transmit) -> bool:
        """Connections are worker 0's: what another worker would send on one (on a flow
        or to a stream destination) is handed to worker 0, which tells back a failure
        (FAILED), as a send of this worker's own would fail."""
        handoffs = self._handoffs
        if handoffs is None or handoffs.place.index == 0:
            return False
        way = action.flow or action.destination
        if way.transport is Transport.UDP:
            return False
        number = str(next(self._handoff_numbers)).encode()
        if action.token is not None:
            now = self._clock()
            away = self._sent_away
            while away and next(iter(away.values()))[0] < now - HANDED_SEND_KEPT:
                away.popitem(last=False)  # no failure told back by now: it went
            away[number] = (now, action.token)
        where = [action.destination, *([action.flow] if action.flow is not None else [])]
        self._count_handoff(handoffs.send(0, TRANSMIT, where, number + b"\n" + action.data))
        return True

    def _count_handoff(self, sent: bool) -> None:
        """A hand-off that could not be sent is dropped, as a datagram would be: counted."""
        self._errors["handed_off" if sent else "handoffs_dropped"] += 1

    # -- carrying out the core's actions

    def _run(self, actions: list[Action]) -> None:
        self._carrier.run(actions)

    def _act(self, action: Action) -> None:
        """The actions the carrier leaves to the EdgePort."""
        if isinstance(action, Resolve):
            self._spawn(self._resolve(action.job, action.target))
        elif isinstance(action, CloseFlow):
            connection = self._connections.get(action.flow)
            if connection is not None:
                connection.close()
        elif isinstance(action, Answered):
            waiting = self._origins.pop(action.origin, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(action.response)
        elif isinstance(action, Registered):
            self._on_registered(action)

    def _on_call(self, event: CallEvent) -> None:
        """One log line per call attempt and per call's end (a challenge's at debug: the
        caller asks again with credentials); metrics; NATS events."""
        level = logging.DEBUG if event.kind == "call.challenged" else logging.INFO
        if log.isEnabledFor(level):
            took = event.setup if event.setup is not None else event.duration
            log.log(
                level,
                "%s %s -> %s %d%s",
                event.kind,
                event.caller,
                event.callee,
                event.status,
                f" after {took:.3f} s" if took is not None else "",
                extra={
                    "call_id": event.call_id,
                    "caller": event.caller,
                    "callee": event.callee,
                    "status": event.status,
                    "setup_seconds": event.setup,
                    "duration_seconds": event.duration,
                },
            )
        if self.http is not None and event.setup is not None and event.kind == "call.started":
            self.http.call_setup.observe(event.setup)
        if self.events is None or event.kind in ("call.failed", "call.challenged"):
            return
        headers = dict(event.extra_headers)
        if event.kind == "call.started":
            self.events.publish(
                "call.started",
                {
                    "callId": event.call_id,
                    "from": event.caller,
                    "to": event.callee,
                    "startTime": iso_now(),
                    "extraHeaders": headers,
                },
            )
        else:
            self.events.publish(
                "call.ended",
                {
                    "callId": event.call_id,
                    "endTime": iso_now(),
                    "hangupCause": HANGUP_CAUSES.get(event.status, "NORMAL_CLEARING"),
                    "extraHeaders": headers,
                },
            )

    def _on_registered(self, event: Registered) -> None:
        if self.events is not None:
            self.events.publish(
                "endpoint.registered",
                {
                    "aor": event.aor,
                    "registeredAt": iso_now(),
                    "expires": event.expires,
                    "extraHeaders": dict(event.extra_headers),
                },
            )

    def _transmit(self, action: Transmit) -> None:
        self._carrier.transmit(action)

    async def _connect_and_send(
        self, destination: NetInterface, data: bytes, token: object
    ) -> None:
        connection = await self._connection_to(destination)
        if connection is None or not connection.send(data):
            self._failed(token)

    async def _connection_to(self, destination: NetInterface) -> Connection | None:
        """A connection to a TCP or TLS next hop, opened once however many wait for it."""
        pending = self._connecting.get(destination)
        if pending is not None:
            return await pending
        future: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._connecting[destination] = future
        connection: Connection | None = None
        try:
            if destination.transport not in (Transport.TCP, Transport.TLS):
                raise OSError(f"cannot open a {destination.transport.value} connection")
            context = None
            if destination.transport is Transport.TLS:
                if self._client_tls is None:
                    self._client_tls = client_context(self.config.spec.security_context)
                context = self._client_tls
            loop = asyncio.get_running_loop()
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: StreamShell(self, destination.transport),
                    destination.host,
                    destination.port,
                    ssl=context,
                    server_hostname=destination.host if context is not None else None,
                ),
                timeout=CONNECT_TIMEOUT,
            )
            connection = protocol
        except (OSError, TimeoutError, ssl.SSLError) as error:
            log.info("cannot connect to %s: %s", destination, error)
        finally:
            del self._connecting[destination]
            future.set_result(connection)
        return connection

    def _failed(self, token: object) -> None:
        if isinstance(token, _HandedSend):  # another worker's: told back to it
            if self._handoffs is not None:
                self._handoffs.send(token.worker, FAILED, [], token.number)
            return
        if self.core is not None:
            self._run(self.core.transport_failed(token, self._clock()))

    async def _resolve(self, job: int, target: Target) -> None:
        assert self.resolver is not None
        try:
            candidates = await self.resolver.resolve(target)
        except Exception as error:  # a resolver bug must not leave the request hanging
            log.warning("cannot resolve %s: %s", target.host, error)
            candidates = []
        if self.core is not None:
            self._run(self.core.resolved(job, candidates, self._clock()))

    # -- the one timer

    def _on_timer(self) -> None:
        self._carrier.on_timer()

    # -- tasks

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._carrier.spawn(coroutine)


FD_WARNING_INTERVAL = 60.0  # seconds between two "out of file descriptors" lines


def watch_descriptors(loop: asyncio.AbstractEventLoop, errors: Counter[str]) -> None:
    """Say so, once a minute, when accept() fails for want of file descriptors (asyncio
    then pauses the listener for a second, and clients see resets, nothing else); every
    other loop error goes where it went before. Installed once per loop."""
    previous = loop.get_exception_handler()
    if getattr(previous, "watches_descriptors", False):
        return
    said = [float("-inf")]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            errors["out_of_file_descriptors"] += 1
            now = time.monotonic()
            if now - said[0] >= FD_WARNING_INTERVAL:
                said[0] = now
                soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
                log.error(
                    "out of file descriptors (limit %d): new connections are refused; "
                    "raise the limit (ulimit -n, LimitNOFILE=, docker --ulimit nofile=)",
                    soft,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.watches_descriptors = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def _grow_buffers(transport: asyncio.DatagramTransport) -> None:
    """Bursts of datagrams overflow the default socket buffers while Python is busy."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
        except OSError:
            log.info("cannot grow the UDP buffers to %d bytes", UDP_BUFFER)


def _advertised(bind_host: str) -> str:
    """The address to put in Via and Record-Route for a bind address."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host.strip("[]")
    family, probe_addr = (
        (socket.AF_INET6, "2001:db8::1") if bind_host == "::" else (socket.AF_INET, "192.0.2.1")
    )
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((probe_addr, 9))  # documentation ranges: connect() sends no packet
            return str(probe.getsockname()[0])
    except OSError:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"
