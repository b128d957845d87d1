"""The EdgePort's proxy core, sans-IO: events and ``now`` in, actions out.

It keeps the RFC 3261 transactions (section 17), answers what a proxy answers by
itself (400, 405, 408, 482, 483, 487, 503, 513), stamps ``received``/``rport`` (section
18.2.1, RFC 3581), handles CANCEL hop by hop (section 16.10), runs Timer C (section
16.6 step 11), puts its Via on what it forwards, and walks the RFC 3263 target list
on a transport error, a timeout or a 503. It never touches a socket, a clock, DNS or
the processor: it asks for them with actions (:class:`Transmit`, :class:`Process`,
:class:`Resolve`, :class:`CloseFlow`) and hears back through the ``*_answered``,
``resolved`` and ``transport_failed`` events. The shells in this package do the I/O.

Flows: a connection is named by its transport and remote address (a NetInterface);
``flow_opened``/``flow_closed`` keep the core's view of which are open.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import ipaddress
import itertools
import os
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from sipgrid.api.types import Fork, MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.connect.context import (
    SECRET_HEADERS,
    follow_route_set,
    pop_own_routes,
    route_stamp,
)
from sipgrid.sip import (
    Challenge,
    Credentials,
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    SipUri,
    Target,
    Via,
    build_cancel,
    error_response,
    host_of,
    is_ip,
    locate,
    make_response,
    parse,
    parse_uri,
)
from sipgrid.sip.digest import answer
from sipgrid.sip.headers import Params
from sipgrid.sip.message import canonical_name
from sipgrid.sip.transaction import (
    T1,
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
    TransportFailed,
    client_key,
    server_key,
)

# a token or key the core hands back as it was given (a name of the module's own: mypyc
# looks a dataclass field's type up among the module's names, where `object` is not)
Opaque = object
TIMER_C: Final = 180.0  # RFC 3261 section 16.6 step 11: more than 3 minutes
CANCEL_GRACE: Final = 32.0  # 64*T1: how long a cancelled INVITE may wait for the callee's 487
LOOP_MARK: Final = "z9hG4bKsg"  # our branches: the magic cookie, "sg", worker, random, loop hash
RETRY_AFTER: Final = 5  # seconds, in the 503s of the limits
BEHIND_QUEUE: Final = 10  # requests waiting for the processor before it can be found behind
# seconds the oldest of those may wait before the processor is behind: T1, after which a
# UDP client sends a non-INVITE request again (RFC 3261 section 17.1.2.2), and again at
# every doubling. A processor serves what it was given together, so past its capacity
# every answer slows at once; with 2 s, a distributed wiring offered 2000 REGISTERs/s
# admitted several seconds' worth before refusing any, answered them after 1 to 5 s,
# parsed 19,000 retransmissions, and completed 600 to 900 exchanges of 20,000; with
# 0.5 s, 2,500 to 3,200 (bench/README.md, session 23)
MAX_PROCESSOR_WAIT: Final = T1
DIALOG_OFFSET_TTL: Final = 12 * 3600.0  # how long a dialog's CSeq offset is kept
DIALOG_OFFSET_MAX: Final = 100_000
CALLS_MAX: Final = 200_000  # calls in progress remembered for their duration (oldest forgotten)
DIALOGS_MAX: Final = 100_000  # dialogs followed here (oldest forgotten: Connect routes them)
# the canonical keys of the headers that carry credentials or a token
_SECRET_KEYS: Final = frozenset({canonical_name(name) for name in SECRET_HEADERS})
BUCKET_SWEEP: Final = 60.0  # seconds a quiet source keeps its rate-limit bucket


# -- actions


# The actions and contexts made for every message have their __init__ written out:
# mypyc compiles these, and leaves the ones dataclass would generate to the
# interpreter, five times dearer (bench/README.md).


@dataclass(frozen=True, slots=True, init=False)
class Transmit:
    """Send bytes: on ``flow`` while it is open, else to ``destination`` (a datagram, or a
    connection opened for it). A failure is reported with ``transport_failed(token)``."""

    data: bytes
    destination: NetInterface
    flow: NetInterface | None
    token: Opaque

    def __init__(
        self,
        data: bytes,
        destination: NetInterface,
        flow: NetInterface | None = None,
        token: Opaque = None,
    ) -> None:
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "destination", destination)
        object.__setattr__(self, "flow", flow)
        object.__setattr__(self, "token", token)


@dataclass(frozen=True, slots=True, init=False)
class Process:
    """Hand a message to the processor; answer with ``processor_answered(job, ...)``."""

    job: int
    request: MessageRequest

    def __init__(self, job: int, request: MessageRequest) -> None:
        object.__setattr__(self, "job", job)
        object.__setattr__(self, "request", request)


@dataclass(frozen=True, slots=True)
class Resolve:
    """Look a target up (RFC 3263: NAPTR, SRV, A/AAAA); answer with ``resolved(job, ...)``."""

    job: int
    target: Target


@dataclass(frozen=True, slots=True)
class CloseFlow:
    flow: NetInterface


@dataclass(frozen=True, slots=True)
class Answered:
    """The final answer to a request of our own (``originate``); None when there was
    none (a timeout, a transport failure, no way to send it)."""

    origin: int
    response: Response | None


@dataclass(frozen=True, slots=True, init=False)
class CallEvent:
    """A call's life as the EdgePort sees it, for logs, metrics and events (Routr's
    names): ``call.started`` (a 2xx to a dialog's first INVITE), ``call.failed`` (a
    final non-2xx to it), ``call.challenged`` (a 401 or 407 to one without credentials,
    which the caller sends again with them) and ``call.ended`` (a 2xx to a BYE).
    ``setup``: seconds from the INVITE to its final answer; ``duration``: from that 2xx
    to the BYE's (None when the call started before we knew of it)."""

    kind: str
    call_id: str
    caller: str
    callee: str
    status: int
    setup: float | None
    duration: float | None
    extra_headers: tuple[tuple[str, str], ...]  # the request's X- headers

    def __init__(
        self,
        kind: str,
        call_id: str,
        caller: str,
        callee: str,
        status: int,
        setup: float | None = None,
        duration: float | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "setup", setup)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "extra_headers", extra_headers)


@dataclass(frozen=True, slots=True)
class Registered:
    """A 2xx to a REGISTER that binds (Routr's ``endpoint.registered``): the AOR, and
    the longest expiry among its Contacts."""

    aor: str
    expires: int
    call_id: str
    extra_headers: tuple[tuple[str, str], ...] = ()


Action = Transmit | Process | Resolve | CloseFlow | Answered | CallEvent | Registered


@dataclass(slots=True)
class CoreSettings:
    ref: str
    listening_points: list[NetInterface]
    methods: frozenset[str]
    external_addrs: list[str] = field(default_factory=list)
    localnets: list[str] = field(default_factory=list)
    max_message_size: int = 65535
    handles_responses: bool = True  # does the processor want to see responses?
    timer_c: float = TIMER_C
    cancel_grace: float = CANCEL_GRACE
    requests_per_second: int = 0  # per source address; 0: no limit
    max_transactions: int = 50_000  # server transactions waiting for an answer; 0: no limit
    # seconds the oldest unanswered request may wait for the processor before new
    # requests are refused (503): the processor is behind; 0: no limit
    max_processor_wait: float = MAX_PROCESSOR_WAIT
    draining: bool = False  # stopping: no new dialogs (503), the rest goes on
    events: bool = False  # someone takes events (NATS): tell registrations, X- headers
    worker: int = 0  # which worker process of those sharing the port (workers.py)
    # a worker other than 0: connections are worker 0's, which knows whether a flow is
    # open; a request for a connection flow goes there (handed over), not elsewhere
    connections_elsewhere: bool = False


# -- what hangs off the transactions


@dataclass(slots=True, eq=False, init=False)
class _Followed:
    """A dialog whose in-dialog requests the processor lets us route (``_follow``)."""

    route: str  # the processor's route for INVITE
    stamp: str  # the Route stamp of its Record-Route (``route_stamp``)
    # its INVITE's Proxy-Authorization values as they came, and those the processor left
    # in it: read only when a request of the dialog brings some (parsing them with every
    # INVITE cost a call 3 %); kept as text, some 300 bytes a dialog with credentials
    came: tuple[str, ...]
    left: tuple[str, ...]
    realms: frozenset[str] | None

    # written out: mypyc leaves a dataclass's generated __init__ to the interpreter (one
    # made for every call's dialog)
    def __init__(
        self, route: str, stamp: str, came: tuple[str, ...], left: tuple[str, ...]
    ) -> None:
        self.route = route
        self.stamp = stamp
        self.came = came
        self.left = left
        self.realms = None

    def realms_out(self) -> frozenset[str]:
        """The realms of the credentials the processor took out of the INVITE (its own:
        it takes out none of others)."""
        if self.realms is None:
            self.realms = _realms(self.came) - _realms(self.left)
        return self.realms


@dataclass(slots=True, eq=False, init=False)
class ServerContext:
    """An upstream server transaction and what hangs off it."""

    tx: ServerInviteTransaction | ServerNonInviteTransaction
    flow: NetInterface  # where the request came from (a connection, or a UDP source)
    started: float  # when the request came
    client: ClientContext | None
    cancelled: bool
    grace_at: float | None
    # responses going through the processor, answered in arrival order (made when the
    # first goes: most transactions never need these, and each is one more object
    # for the cycle collector to walk while the transaction lives)
    relays: deque[int] | None
    relayed: dict[int, Response | None]
    # serial forking (RFC 3261 section 16.7): the Request-URIs left to try, and the
    # request as the processor gave it, to retarget
    alternatives: list[str] | None
    forwarded: Request | None
    # the next hop's challenge answered with these (username, password), once a target
    credentials: tuple[str, str] | None
    challenge_answered: bool
    # what our CSeq differs by from the caller's in this dialog (a challenge answered)
    cseq_offset: int
    # parallel forking (RFC 3261 section 16.7): every branch, and the best final answer
    branches: tuple[ClientContext, ...]
    forking: bool
    answered: bool  # a 2xx went upstream
    best: Response | None
    key: Opaque  # its key in the table of server transactions
    lingering: bool  # answered, a non-INVITE kept only for retransmissions (Timer J)
    # a dialog's INVITE whose later requests the processor lets us route: remembered when
    # the 2xx goes upstream (_Followed)
    dialog: _Followed | None

    def __init__(
        self,
        tx: ServerInviteTransaction | ServerNonInviteTransaction,
        flow: NetInterface,
        started: float = 0.0,
        key: Opaque = None,
    ) -> None:
        self.tx = tx
        self.flow = flow
        self.started = started
        self.key = key
        self.client = None
        self.cancelled = False
        self.grace_at = None
        self.relays = None
        self.relayed = {}
        self.alternatives = None
        self.forwarded = None
        self.credentials = None
        self.challenge_answered = False
        self.cseq_offset = 0
        self.branches = ()
        self.forking = False
        self.answered = False
        self.best = None
        self.lingering = False
        self.dialog = None

    def clients(self) -> tuple[ClientContext, ...]:
        """Its client transactions: every branch of a fork, else the one it has."""
        return self.branches or ((self.client,) if self.client is not None else ())


@dataclass(slots=True, eq=False, init=False)
class ClientContext:
    """A downstream client transaction, the server transaction it serves, and the
    targets left to try (RFC 3263 section 4.3)."""

    tx: ClientInviteTransaction | ClientNonInviteTransaction
    destination: NetInterface
    flow: NetInterface | None
    server: ServerContext | None
    original: Request | None  # the request before our Via, to try the next target
    remaining: list[NetInterface]
    provisional: bool
    cancel_pending: bool
    timer_c_at: float | None
    done: bool  # a branch of a fork that has its final answer
    origin: int | None  # a request of our own: its answer is reported under this
    key: tuple[str | None, str]  # its key in the table of client transactions

    def __init__(
        self,
        tx: ClientInviteTransaction | ClientNonInviteTransaction,
        destination: NetInterface,
        flow: NetInterface | None,
        server: ServerContext | None,
        original: Request | None = None,
        remaining: list[NetInterface] | None = None,
        origin: int | None = None,
    ) -> None:
        self.tx = tx
        self.destination = destination
        self.flow = flow
        self.server = server
        self.original = original
        self.remaining = [] if remaining is None else remaining
        self.origin = origin
        self.key = client_key(tx.request)
        self.provisional = False
        self.cancel_pending = False
        self.timer_c_at = None
        self.done = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    warned: float = float("-inf")


@dataclass(slots=True)
class _Forward:
    """A request waiting for its targets to be resolved."""

    server: ServerContext | None
    request: Request


@dataclass(slots=True)
class _Relay:
    server: ServerContext
    response: Response


Job = ServerContext | _Forward | _Relay | NetInterface  # NetInterface: the flow of an ACK


COMPACT_FIRST: Final = 1024  # timer entries before the first sweep of stale ones
SWEEP_EVERY: Final = 10.0  # seconds: stale timer entries are swept at least this often


def _due(deadline: float, kind: str, ctx: ServerContext | ClientContext) -> bool:
    """Whether a timer entry still stands: its transaction's next deadline, a Timer C or
    a CANCEL grace that was neither stopped nor moved."""
    if kind == "tx":
        return ctx.tx.state is not State.TERMINATED and ctx.tx.next_deadline() == deadline
    if kind == "timer_c":  # it matters while no final answer came (see _on_timer_c)
        return (
            isinstance(ctx, ClientContext)
            and ctx.timer_c_at == deadline
            and ctx.tx.state in (State.CALLING, State.PROCEEDING)
        )
    return isinstance(ctx, ServerContext) and ctx.grace_at == deadline


def _release(server: ServerContext | None) -> None:
    """Unlink a server transaction from its client transactions once all of them ended.
    They point at each other, a cycle that only a full collection would free (and the
    all-in-one collects rarely, see tune_gc): unlinked, each goes the moment it ends."""
    if server is None or server.tx.state is not State.TERMINATED:
        return
    if all(client.tx.state is State.TERMINATED for client in server.clients()):
        for client in server.clients():
            client.server = None  # a stale timer entry may hold the client a while
        server.client = None
        server.branches = ()


class EdgePortCore:
    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self.listening_points = settings.listening_points
        self.methods = settings.methods | {"ACK", "CANCEL"}
        self._localnets = [ipaddress.ip_network(n, strict=False) for n in settings.localnets]
        self._server_txs: dict[object, ServerContext] = {}
        # the answered non-INVITE transactions that linger for Timer J, oldest first (some
        # may have ended since: those are dropped from the front), and how many linger
        self._lingering: deque[ServerContext] = deque()
        self._lingering_count = 0
        self._client_txs: dict[tuple[str | None, str], ClientContext] = {}
        self._timers: list[tuple[float, int, str, ServerContext | ClientContext]] = []
        self._compact_at = COMPACT_FIRST  # heap size at which stale entries are swept out
        self._swept_at = 0.0  # when the timers were last swept (at most every SWEEP_EVERY)
        self._seq = itertools.count()
        self._jobs: dict[int, Job] = {}
        self._job_ids = itertools.count(1)
        # the processor's jobs for new requests, oldest first: when each was asked
        self._asked: dict[int, float] = {}
        self._open_flows: set[NetInterface] = set()
        self._now = 0.0  # the time of the event being handled
        self._buckets: dict[str, _Bucket] = {}
        self._buckets_swept = 0.0
        # (Call-ID, caller's From tag) -> (CSeq offset, until when): dialogs whose INVITE
        # we sent again with credentials
        self._cseq_offsets: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        # Call-ID -> when its 2xx went upstream, caller, callee: calls in progress
        self._calls: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        # the processor's route for a request of a method, when nothing stands between it
        # and the processor (no middleware); None: in-dialog requests always go to it
        self.untouched_route: Callable[[str], str | None] | None = None
        # whether the processor has banned a source address (the all-in-one's guard): a
        # banned source's in-dialog requests go to the processor, which refuses them
        self.banned: Callable[[str], bool] | None = None
        # "Call-ID, tags" -> the dialog: those whose in-dialog requests we route ourselves
        # (MessageResponse.follow_dialog)
        self._dialogs: OrderedDict[str, _Followed] = OrderedDict()
        self.stats: Counter[str] = Counter()

    # -- state the shells and tests read

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    @property
    def busy(self) -> int:
        """Transactions of callers still waiting for an answer (not the ones that linger
        after theirs, absorbing retransmissions, nor requests of our own: probes and
        trunk registrations)."""
        live = (State.CALLING, State.TRYING, State.PROCEEDING)
        return sum(c.tx.state in live for c in self._server_txs.values()) + sum(
            c.tx.state in live for c in self._client_txs.values() if c.origin is None
        )

    @property
    def dialogs_followed(self) -> int:
        """Dialogs whose in-dialog requests this EdgePort routes by itself."""
        return len(self._dialogs)

    @property
    def transactions(self) -> tuple[int, int]:
        """How many (server, client) transactions are alive."""
        return len(self._server_txs), len(self._client_txs)

    @property
    def pending_jobs(self) -> int:
        return len(self._jobs)

    # -- flows

    def originate(
        self, request: Request, destination: NetInterface, now: float
    ) -> tuple[int, list[Action]]:
        """Send a request of our own (an OPTIONS probe): a client transaction whose
        final answer comes back as an ``Answered`` action with the returned number."""
        self._now = now
        origin = next(self._job_ids)
        out: list[Action] = []
        self._send_request(None, request, [destination], None, now, out, origin=origin)
        return origin, out

    def flow_opened(self, flow: NetInterface) -> None:
        self._open_flows.add(flow)

    def flow_closed(self, flow: NetInterface) -> None:
        self._open_flows.discard(flow)

    # -- input

    def receive_datagram(self, data: bytes, flow: NetInterface, now: float) -> list[Action]:
        """A UDP datagram: keep-alives ignored, then parse, size check, handling."""
        if len(data) <= 4 and not data.strip():
            return []
        self._now = now
        self.stats["received"] += 1
        try:
            message = parse(data)
        except ParseError as error:
            return self._answer_garbage(data, error, flow)
        if len(data) > self.settings.max_message_size:
            self.stats["too_large"] += 1
            if isinstance(message, Request) and message.method != "ACK":
                response = make_response(message, 513, to_tag=_tag())
                return [self._upstream(response, flow)]
            return []
        return self.receive_message(message, flow, now)

    def stream_error(self, error: ParseError, flow: NetInterface) -> list[Action]:
        """A stream that cannot be framed any more: answer if we can, then close it."""
        self.stats["malformed"] += 1
        actions: list[Action] = []
        is_ack = any(k == "cseq" and v.rstrip().endswith(" ACK") for k, v in error.fields)
        if not is_ack:
            actions.append(Transmit(error_response(error, to_tag=_tag()).serialize(), flow, flow))
        actions.append(CloseFlow(flow))
        return actions

    def receive_message(
        self, message: Request | Response, flow: NetInterface, now: float
    ) -> list[Action]:
        self._now = now
        out: list[Action] = []
        try:
            if isinstance(message, Request):
                self._on_request(message, flow, now, out)
            else:
                self._on_response(message, now, out)
        except ParseError as error:  # a header read late (Contact, Route...) was bad
            self.stats["malformed"] += 1
            if isinstance(message, Request) and message.method != "ACK":
                error.fields = [(f.key, f.value) for f in message.fields]
                out.append(self._upstream(error_response(error, to_tag=_tag()), flow))
        return out

    def processor_answered(
        self, job: int, result: MessageResponse | None, now: float
    ) -> list[Action]:
        """The processor's answer to a Process action; None when it failed or is down."""
        self._now = now
        what = self._jobs.pop(job, None)
        self._asked.pop(job, None)
        out: list[Action] = []
        if what is None:
            return out
        if result is None:
            self.stats["processor_errors"] += 1
        if isinstance(what, ServerContext):
            self._processed(what, result, now, out)
        elif isinstance(what, _Relay):
            message = result.message if result is not None else what.response
            self._relayed(what.server, job, message, now, out)
        elif (  # an ACK of a 2xx
            isinstance(what, NetInterface)
            and result is not None
            and isinstance(result.message, Request)
            and not result.drop
        ):
            self._forward(None, result.message, result, now, out)
        return out

    def resolved(self, job: int, candidates: list[NetInterface], now: float) -> list[Action]:
        """The targets of a Resolve action, best first (empty: the lookup failed)."""
        self._now = now
        what = self._jobs.pop(job, None)
        out: list[Action] = []
        if isinstance(what, _Forward):
            self._send_request(what.server, what.request, candidates, None, now, out)
        return out

    def transport_failed(self, token: object, now: float) -> list[Action]:
        """A Transmit could not be done (no connection, a refused send)."""
        self._now = now
        self.stats["send_errors"] += 1
        out: list[Action] = []
        if isinstance(token, ClientContext):
            self._apply_client(token, token.tx.transport_error(), now, out)
        elif isinstance(token, ServerContext):
            self._apply_server(token, token.tx.transport_error(), out)
        return out

    def handle_timers(self, now: float) -> list[Action]:
        self._now = now
        out: list[Action] = []
        if now - self._swept_at >= SWEEP_EVERY and len(self._timers) > COMPACT_FIRST:
            self._compact()  # what stopped since, once traffic slowed down
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, kind, ctx = heapq.heappop(timers)
            if not _due(deadline, kind, ctx):
                continue  # stale entry: the machine moved on, or the timer was stopped
            if kind == "tx":
                if isinstance(ctx, ServerContext):
                    self._apply_server(ctx, ctx.tx.handle_timer(now), out)
                else:
                    self._apply_client(ctx, ctx.tx.handle_timer(now), now, out)
            elif kind == "timer_c" and isinstance(ctx, ClientContext):
                ctx.timer_c_at = None
                self._on_timer_c(ctx, now, out)
            elif kind == "grace" and isinstance(ctx, ServerContext):
                ctx.grace_at = None
                for client in ctx.clients():
                    client.timer_c_at = None
                if ctx.tx.state is State.PROCEEDING:
                    self._respond(ctx, 487, out=out)
        return out

    # -- requests

    def _answer_garbage(self, data: bytes, error: ParseError, flow: NetInterface) -> list[Action]:
        if data[:4].upper() == b"SIP/":
            self.stats["malformed_responses_dropped"] += 1
            return []
        if data[:4] == b"ACK ":
            self.stats["malformed_acks_dropped"] += 1  # an ACK is never answered
            return []
        self.stats["malformed"] += 1
        return [self._upstream(error_response(error, to_tag=_tag()), flow)]

    def _on_request(
        self, request: Request, flow: NetInterface, now: float, out: list[Action]
    ) -> None:
        method = request.method
        self.stats[f"request:{method}"] += 1
        if self.settings.requests_per_second and not self._admitted(request, flow, now, out):
            return
        received = request.serialize()  # the bytes as they came (no copy): see received_as
        self._stamp_via(request, flow)
        if method == "ACK":
            ctx = self._server_txs.get(server_key(request))
            if ctx is not None and ctx.tx.matches(request):
                self._apply_server(ctx, ctx.tx.receive_request(request, now), out)
                return
            followed = self._follow(request, flow) if request.max_forwards != 0 else None
            if followed is None:
                job = self._job(flow)
                out.append(Process(job, self._message_request(request, flow)))
            elif isinstance(followed.message, Request) and not followed.drop:
                self._forward(None, followed.message, followed, now, out)
            return
        if method == "CANCEL":
            self._on_cancel(request, flow, now, out)
            return
        key = server_key(request)
        ctx = self._server_txs.get(key)
        if ctx is not None and ctx.tx.matches(request):
            self.stats["retransmissions"] += 1
            self._apply_server(ctx, ctx.tx.receive_request(request, now), out)
            return
        limit = self.settings.max_transactions
        if limit and len(self._server_txs) - self._lingering_count >= limit:
            self.stats["transactions_full"] += 1
            busy = make_response(request, 503, "Service Unavailable (Busy)", to_tag=_tag())
            busy.set("Retry-After", RETRY_AFTER)
            out.append(self._upstream(busy, flow))
            return
        reliable = flow.transport.reliable
        tx: ServerInviteTransaction | ServerNonInviteTransaction
        tx = (
            ServerInviteTransaction(request, reliable=reliable)
            if method == "INVITE"
            else ServerNonInviteTransaction(request, reliable=reliable)
        )
        if method != "INVITE":
            # kept as they came once answered (Timer J): not written again for that
            tx.received_as(received)
        ctx = ServerContext(tx, flow, now, key=key)
        self._server_txs[key] = ctx
        self._apply_server(ctx, tx.start(now), out)
        if method not in self.methods:
            self._respond(ctx, 405, headers=[("Allow", ", ".join(sorted(self.methods)))], out=out)
        elif self.settings.draining and request.to.tag is None:
            self.stats["refused_draining"] += 1
            retry: list[tuple[str, object]] = [("Retry-After", RETRY_AFTER)]
            self._respond(ctx, 503, "Service Unavailable (Shutting Down)", retry, out=out)
        elif request.max_forwards == 0 and method != "OPTIONS":
            self._respond(ctx, 483, out=out)
        elif self._looped(request):
            self._respond(ctx, 482, out=out)
        elif request.to.tag is None and self._processor_behind(request, now):
            self.stats["processor_behind"] += 1
            retry = [("Retry-After", RETRY_AFTER)]
            # stateless but for an INVITE, whose transaction takes the ACK (section 26.1.5)
            self._respond(ctx, 503, "Service Unavailable (Busy)", retry, out=out, keep=False)
        else:
            followed = self._follow(request, flow) if request.to.tag is not None else None
            if followed is not None:
                self._processed(ctx, followed, now, out)
                return
            self.stats["to_processor"] += 1
            job = self._job(ctx)
            self._asked[job] = now
            out.append(Process(job, self._message_request(request.copy(), flow)))

    def _follow(self, request: Request, flow: NetInterface) -> MessageResponse | None:
        """An in-dialog request of a dialog the processor lets us follow, routed here as
        the processor would route it (``follow_route_set``), or None: to the processor.

        Only while its method reaches the processor that let us with nothing in between
        (a middleware added since sees it), with its top Route the very Record-Route the
        processor put in (flows and signature: we cannot check the signature, so one
        edited by a party of the dialog goes to the processor, which refuses it), from a
        source the processor has not banned (when it can say: ``banned``), and with
        no credentials or token but Proxy-Authorization values of the realms the processor
        took out of the dialog's INVITE: a phone may send those again with each request of
        the dialog (baresip does, in its ACK and BYE; RFC 3261 section 22.3 lets a UAC reuse
        a realm's credentials), and they are taken out here as the processor takes them out
        (a secret never leaves sipgrid). Anything else with credentials goes to the
        processor."""
        dialogs = self._dialogs
        to_tag, from_tag = request.to.tag, request.from_.tag
        if not dialogs or to_tag is None or from_tag is None:
            return None
        known = dialogs.get(_dialog_key(request.call_id, from_tag, to_tag))
        rule = self.untouched_route
        if known is None or rule is None or rule(request.method) != known.route:
            return None
        banned = self.banned
        if banned is not None and banned(flow.host):
            return None
        reused = False  # a phone's credentials again
        for header in request.fields:  # one pass over the fields for every secret's name
            key = header.key
            if key in _SECRET_KEYS:
                if key != "proxy-authorization":
                    return None
                reused = True
        try:
            if reused:
                realms = known.realms_out()
                for credentials in request.proxy_authorizations:
                    if credentials.realm not in realms:
                        return None
            routes = request.routes
            top = routes[0].sip_uri if routes else None
            if top is None or route_stamp(top) != known.stamp:
                return None
            if not self._is_our_address(top.host, top.port):
                return None
            message = request.copy()
            if reused:
                message.remove("Proxy-Authorization")
            ours = pop_own_routes(message, self._message_request(message, flow))
            followed = follow_route_set(message, ours)
        except ParseError:
            return None  # the processor answers what is wrong
        self.stats["dialog_followed"] += 1
        return followed

    def _may_follow(self, ctx: ServerContext, message: Request) -> None:
        """The processor lets us follow the dialog this INVITE starts: what its Record-Route
        says, kept until the 2xx goes upstream (``_call_event``)."""
        rule = self.untouched_route
        route = rule("INVITE") if rule is not None else None
        if route is None or message.method != "INVITE" or message.to.tag is not None:
            return
        try:
            records = message.record_routes
        except ParseError:
            return
        top = records[0].sip_uri if records else None
        if top is None or not self._is_our_address(top.host, top.port):
            return
        stamp = route_stamp(top)
        if stamp:
            came = tuple(ctx.tx.request.get_all("Proxy-Authorization"))
            left = tuple(message.get_all("Proxy-Authorization")) if came else ()
            ctx.dialog = _Followed(route, stamp, came, left)

    def _processor_behind(self, request: Request, now: float) -> bool:
        """A queue is waiting for the processor (BEHIND_QUEUE requests or more), and its
        oldest has waited longer than ``max_processor_wait``: the processor cannot keep
        up, and a queue of what callers will have given up on by the time it is answered
        only makes that worse. (One slow answer alone is not a queue.)

        A request with credentials most likely answers a challenge the processor sent:
        refusing it would throw that work away and fail the exchange, and under an
        avalanche of REGISTERs almost no exchange would get both steps through. It goes
        on until the oldest has waited twice the limit (credentials can be made up)."""
        limit = self.settings.max_processor_wait
        if not limit or len(self._asked) < BEHIND_QUEUE:
            return False
        waited = now - next(iter(self._asked.values()))
        if waited <= limit:
            return False
        return waited > 2 * limit or not _has_credentials(request)

    def _admitted(
        self, request: Request, flow: NetInterface, now: float, out: list[Action]
    ) -> bool:
        """Pike-like: a token bucket of ``requests_per_second`` per source address. Over it,
        one 503 with Retry-After per second tells a well-behaved client to slow down; the
        rest is dropped unanswered, which costs a flood nothing and us little."""
        rate = self.settings.requests_per_second
        bucket = self._buckets.get(flow.host)
        if bucket is None:
            if now - self._buckets_swept > BUCKET_SWEEP:
                self._sweep_buckets(now)
            bucket = self._buckets[flow.host] = _Bucket(float(rate), now)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        self.stats["rate_limited"] += 1
        if now - bucket.warned >= 1.0 and request.method != "ACK":
            bucket.warned = now
            slow_down = make_response(
                request, 503, "Service Unavailable (Rate Limited)", to_tag=_tag()
            )
            slow_down.set("Retry-After", RETRY_AFTER)
            out.append(self._upstream(slow_down, flow))
        return False

    def _sweep_buckets(self, now: float) -> None:
        """Forget sources quiet for a while, so the table cannot grow without bound."""
        self._buckets_swept = now
        self._buckets = {h: b for h, b in self._buckets.items() if now - b.at < BUCKET_SWEEP}

    def _stamp_via(self, request: Request, flow: NetInterface) -> None:
        """received whenever the sent-by host is not the source (RFC 3261 section 18.2.1);
        rport filled in when asked for (RFC 3581)."""
        via = request.top_via
        stamp = via.host.strip("[]") != flow.host
        if not stamp:  # rport asked for: then received is set too
            for name, _ in via.params:
                if name == "rport" or name.lower() == "rport":
                    stamp = True
                    break
            if not stamp:
                return
        # one pass, one new Via for both: each keeps its place, received goes last if new
        given = via.params
        port, host = str(flow.port), flow.host
        params: list[tuple[str, str | None]] = []
        ported = received = False
        for name, value in given:
            lname = name if name == "rport" or name == "received" else name.lower()
            if lname == "rport":
                if not ported:
                    params.append(("rport", port))
                ported = True
            elif lname == "received":
                if not received:
                    params.append(("received", host))
                received = True
            else:
                params.append((name, value))
        if not received:
            params.append(("received", host))
        stamped = Via(via.transport, via.host, via.port, tuple(params), via.protocol)
        # the usual shape, rport asked for once and last or not at all, and no received:
        # both go at the end of the value as written, which is not written again
        if not received and len(params) == len(given) + 1:
            if not ported:
                request.set_top_via(stamped, f";received={host}")
                return
            if given[-1] == ("rport", None):
                request.set_top_via(stamped, f"={port};received={host}")
                return
        request.set_top_via(stamped)

    def _looped(self, request: Request) -> bool:
        """RFC 3261 section 16.3 step 4: our own Via with this request's loop hash."""
        if not any(LOOP_MARK in value for value in request.get_all("Via")):
            return False  # no Via of ours at all: the common case, decided without parsing
        ours = _branch_hash(request)
        for via in request.vias[1:]:
            branch = via.branch or ""
            if (
                branch.startswith(LOOP_MARK)
                and branch.endswith(ours)
                and self._is_our_address(via.host, via.port)
            ):
                return True
        return False

    def _is_our_address(self, host: str, port: int | None) -> bool:
        host = host.strip("[]").lower()
        return any(
            lp.host.lower() == host and (port or _default_port(lp.transport)) == lp.port
            for lp in self.listening_points
        ) or any(host_of(addr) == host for addr in self.settings.external_addrs)

    def _message_request(self, message: Request | Response, flow: NetInterface) -> MessageRequest:
        method = message.method if isinstance(message, Request) else message.cseq.method
        return MessageRequest(
            ref=message.call_id,
            edge_port_ref=self.settings.ref,
            method=method,
            sender=flow,
            listening_points=self.listening_points,
            message=message,
            external_addrs=self.settings.external_addrs,
            localnets=self.settings.localnets,
        )

    def _processed(
        self, ctx: ServerContext, result: MessageResponse | None, now: float, out: list[Action]
    ) -> None:
        if result is None:  # a part behind us is down: try again in a while (RFC 3261 21.5.4)
            retry: list[tuple[str, object]] = [("Retry-After", RETRY_AFTER)]
            self._respond(ctx, 503, "Service Unavailable (Processor Failed)", retry, out=out)
            return
        message = result.message
        if isinstance(message, Response):
            # a challenge to a non-INVITE request is sent as a stateless UAS sends it (RFC
            # 3261 section 8.2.7): a flood of unauthenticated requests leaves no 32 s of
            # transaction state behind (section 26.1.5), and a retransmission is simply
            # challenged again (an INVITE's 407 keeps its transaction, for the ACK)
            self._send_response(ctx, message, out, keep=message.status not in (401, 407))
        elif result.drop:
            self._respond(ctx, 500, "Server Internal Error (Nothing To Do)", out=out)
        elif ctx.cancelled:
            self._respond(ctx, 487, out=out)
        else:
            if result.alternatives:
                ctx.alternatives = list(result.alternatives)
                ctx.forwarded = message.copy()
            ctx.credentials = result.credentials
            if result.forks:
                self._fork(ctx, message, result.forks, now, out)
                return
            if result.follow_dialog:
                self._may_follow(ctx, message)
            self._forward(ctx, message, result, now, out)

    # -- forwarding

    def _forward(
        self,
        ctx: ServerContext | None,
        request: Request,
        result: MessageResponse,
        now: float,
        out: list[Action],
    ) -> None:
        """Send a request on: over the preferred flow while it is open, else to the
        processor's destination, else to the located top Route or Request-URI."""
        flow = result.target_flow
        if flow is not None and flow in self._open_flows:
            self._send_request(ctx, request, [flow], flow, now, out)
            return
        # a worker other than 0: worker 0 holds the connections, and sends on the flow
        # while it is open, else where the request would go without it
        held = self.settings.connections_elsewhere and flow is not None and flow.transport.reliable
        elsewhere = flow if held else None
        if result.destination is not None and is_ip(result.destination.host):
            self._send_request(ctx, request, [result.destination], elsewhere, now, out)
            return
        if result.destination is not None:
            d = result.destination
            target = Target(d.host, d.port, d.transport.value, d.transport is Transport.TLS)
        else:
            routes = request.routes
            uri = routes[0].sip_uri if routes else request.uri
            if not isinstance(uri, SipUri):
                self._unreachable(ctx, f"cannot route to {uri}", out)
                return
            target = locate(uri)
        if target.numeric and target.transport is not None:
            transport = Transport.parse(target.transport)
            destination = NetInterface(target.host, target.port or target.default_port, transport)
            self._send_request(ctx, request, [destination], elsewhere, now, out)
            return
        if elsewhere is not None:  # a name (a WebSocket phone's .invalid): the flow only
            self._send_request(ctx, request, [elsewhere], elsewhere, now, out)
            return
        out.append(Resolve(self._job(_Forward(ctx, request)), target))

    def _send_request(
        self,
        ctx: ServerContext | None,
        request: Request,
        candidates: list[NetInterface],
        flow: NetInterface | None,
        now: float,
        out: list[Action],
        origin: int | None = None,
    ) -> None:
        """Our Via on top, then a client transaction (none for an ACK) to the first target
        we can reach; the rest are kept for failover."""
        if ctx is not None and (ctx.cancelled or ctx.tx.state is State.TERMINATED):
            return
        candidates = list(candidates)
        while candidates:
            destination = candidates.pop(0)
            lp = self._listening_point(destination)
            if lp is not None:
                break
        else:
            if origin is not None:
                out.append(Answered(origin, None))
            self._unreachable(ctx, "no target we can reach", out)
            return
        if ctx is None or ctx.tx.request.cseq.seq == request.cseq.seq:
            self._shift_cseq(ctx, request)
        outgoing = request.copy() if candidates else request
        # the worker's number, for a response that reaches another worker (workers.py)
        worker = f"{self.settings.worker:02x}"
        branch = f"{LOOP_MARK}{worker}{os.urandom(5).hex()}{_branch_hash(request)}"
        outgoing.push_via(self._via(lp, destination, branch))
        if destination.transport.reliable:
            _frame_for_stream(outgoing)
        if outgoing.method == "ACK":
            out.append(Transmit(outgoing.serialize(), destination, flow))
            return
        reliable = destination.transport.reliable
        tx: ClientInviteTransaction | ClientNonInviteTransaction
        if outgoing.method == "INVITE":
            tx = ClientInviteTransaction(outgoing, reliable=reliable)
        else:
            tx = ClientNonInviteTransaction(outgoing, reliable=reliable)
        cctx = ClientContext(tx, destination, flow, ctx, request, candidates, origin=origin)
        self._client_txs[cctx.key] = cctx
        if ctx is not None:
            ctx.client = cctx
            if ctx.forking:
                ctx.branches += (cctx,)
        if outgoing.method == "INVITE":
            self._arm_timer_c(cctx, now)
        self._apply_client(cctx, tx.start(now), now, out)

    def _unreachable(self, ctx: ServerContext | None, why: str, out: list[Action]) -> None:
        self.stats["next_hop_unreachable"] += 1
        if self._next_alternative(ctx, self._now, out):
            return
        if ctx is not None:
            self._respond(ctx, 503, "Service Unavailable (Next Hop Unreachable)", out=out)

    def _listening_point(self, destination: NetInterface) -> NetInterface | None:
        """Ours for this transport and address family, if any."""
        v6 = ":" in destination.host
        for lp in self.listening_points:
            if lp.transport is destination.transport and (":" in lp.host) == v6:
                return lp
        if not is_ip(destination.host):  # a flow to a WebSocket client: any of that transport
            return next(
                (p for p in self.listening_points if p.transport is destination.transport), None
            )
        return None

    def _via(self, lp: NetInterface, destination: NetInterface, branch: str) -> Via:
        host = lp.host
        if self.settings.external_addrs and not self._is_local(destination.host):
            host = host_of(self.settings.external_addrs[0])
        if ":" in host:
            host = f"[{host}]"
        params: Params = (
            (("branch", branch), ("rport", None))
            if destination.transport is Transport.UDP
            else (("branch", branch),)
        )
        return Via(destination.transport.via_name, host, lp.port, params)

    def _is_local(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or any(ip in net for net in self._localnets)

    # -- CANCEL (RFC 3261 section 16.10)

    def _on_cancel(
        self, cancel: Request, flow: NetInterface, now: float, out: list[Action]
    ) -> None:
        key = server_key(cancel)
        existing = self._server_txs.get(key)
        if existing is not None:
            self._apply_server(existing, existing.tx.receive_request(cancel, now), out)
            return
        tx = ServerNonInviteTransaction(cancel, reliable=flow.transport.reliable)
        ctx = ServerContext(tx, flow, key=key)
        self._server_txs[key] = ctx
        tx.start(now)
        invite = self._server_txs.get(server_key(cancel, method="INVITE"))
        if invite is None or not isinstance(invite.tx, ServerInviteTransaction):
            self._respond(ctx, 481, out=out)
            return
        self._respond(ctx, 200, out=out)
        if invite.tx.state is not State.PROCEEDING or invite.cancelled:
            return
        invite.cancelled = True
        if invite.client is None:
            self._respond(invite, 487, out=out)  # the processor has not answered yet
            return
        for client in invite.clients():
            self._cancel_branch(client, now, out)

    def _cancel_branch(self, client: ClientContext, now: float, out: list[Action]) -> None:
        if client.done or client.tx.state not in (State.CALLING, State.PROCEEDING):
            return
        if client.provisional:
            self._cancel_downstream(client, now, out)
        else:
            client.cancel_pending = True  # RFC 3261 section 9.1: wait for a provisional

    def _cancel_downstream(self, client: ClientContext, now: float, out: list[Action]) -> None:
        cancel = build_cancel(client.tx.request)
        reliable = client.destination.transport.reliable
        if reliable:
            _frame_for_stream(cancel)
        tx = ClientNonInviteTransaction(cancel, reliable=reliable)
        cctx = ClientContext(tx, client.destination, client.flow, None)
        self._client_txs[cctx.key] = cctx
        self._apply_client(cctx, tx.start(now), now, out)
        server = client.server
        if server is not None:
            server.grace_at = now + self.settings.cancel_grace
            self._push(server.grace_at, "grace", server)

    # -- Timer C (RFC 3261 section 16.6 step 11)

    def _arm_timer_c(self, cctx: ClientContext, now: float) -> None:
        cctx.timer_c_at = now + self.settings.timer_c
        self._push(cctx.timer_c_at, "timer_c", cctx)

    def _on_timer_c(self, cctx: ClientContext, now: float, out: list[Action]) -> None:
        if cctx.tx.state not in (State.CALLING, State.PROCEEDING):
            return
        self.stats["timer_c"] += 1
        if cctx.provisional:
            self._cancel_downstream(cctx, now, out)  # the callee answers 487, or we do
        elif cctx.server is not None and cctx.server.forking:
            self._branch_final(cctx, cctx.server, self._synthetic(cctx, 408), out)
        elif cctx.server is not None:
            self._respond(cctx.server, 408, out=out)

    # -- responses

    def _on_response(self, response: Response, now: float, out: list[Action]) -> None:
        self.stats[f"response:{response.status // 100}xx"] += 1
        via = response.top_via
        if not self._is_our_address(via.host, via.port):
            self.stats["responses_not_ours"] += 1
            return
        cctx = self._client_txs.get(client_key(response))
        if cctx is None:
            self._relay_stray(response, out)
            return
        self._apply_client(cctx, cctx.tx.receive_response(response, now), now, out)

    def _on_client_response(
        self, cctx: ClientContext, response: Response, now: float, out: list[Action]
    ) -> None:
        status = response.status
        if cctx.timer_c_at is not None:
            if status < 200:
                self._arm_timer_c(cctx, now)
            else:
                cctx.timer_c_at = None
        if status < 200:
            cctx.provisional = True
            if cctx.cancel_pending:
                cctx.cancel_pending = False
                self._cancel_downstream(cctx, now, out)
        server = cctx.server
        if server is None:  # the answer to our own CANCEL, or to a request of ours
            if cctx.origin is not None and status >= 200:
                out.append(Answered(cctx.origin, response))
            return
        if server.forking and status >= 200:
            self._branch_final(cctx, server, response, out)
            return
        if status in (401, 407) and self._answer_challenge(cctx, server, response, now, out):
            return
        if status == 503 and self._fail_over(cctx, now, out):
            return  # RFC 3263 section 4.3: the next target
        if (status == 408 or 500 <= status < 600) and self._next_alternative(server, now, out):
            return
        if status == 503:
            # RFC 3261 section 16.7 step 6: a 503 upstream would say that *we* are
            # unavailable; the next hop's becomes a 500
            response.status, response.reason = 500, "Server Internal Error (Next Hop Unavailable)"
        self._relay_upstream(server, response, out)

    def _relay_upstream(self, server: ServerContext, response: Response, out: list[Action]) -> None:
        """A downstream answer goes to the caller, through the processor if it wants it."""
        response.pop_first_value("Via")
        if server.cseq_offset:  # the caller knows its own CSeq, not ours
            original = server.tx.request.cseq
            response.set("CSeq", f"{original.seq} {original.method}")
        if not self.settings.handles_responses and not server.relays:
            self._send_response(server, response, out)
            return
        job = self._job(_Relay(server, response))
        if server.relays is None:
            server.relays = deque()
        server.relays.append(job)
        out.append(Process(job, self._message_request(response, server.flow)))

    # -- parallel forking (RFC 3261 section 16.7)

    def _fork(
        self,
        ctx: ServerContext,
        template: Request,
        forks: list[Fork],
        now: float,
        out: list[Action],
    ) -> None:
        """Ring every target at once: a copy of the request per branch, with the
        branch's own Record-Route values on top."""
        ctx.forking = True
        for fork in forks:
            request = template.copy()
            try:
                request.set_uri(parse_uri(fork.uri, what="fork"))
            except ParseError:
                continue
            for value in fork.record_route:
                request.add("Record-Route", value, first=True)
            branch = MessageResponse(
                request, destination=fork.destination, target_flow=fork.target_flow
            )
            self._forward(ctx, request, branch, now, out)
            if ctx.tx.state not in (State.TRYING, State.PROCEEDING):
                return  # the caller has its answer already
        if not ctx.branches and ctx.tx.state in (State.TRYING, State.PROCEEDING):
            self._respond(ctx, 480, out=out)

    def _branch_final(
        self, cctx: ClientContext, server: ServerContext, response: Response, out: list[Action]
    ) -> None:
        """A final answer on one branch: every 2xx goes upstream and the first ends the
        others (CANCEL); a 6xx ends them too; else the best answer waits for the last."""
        now = self._now
        cctx.done = True
        status = response.status
        if 200 <= status < 300:
            if server.answered or server.tx.state not in (State.TRYING, State.PROCEEDING):
                self._relay_stray(response, out)  # a second 2xx: the caller ACKs and BYEs it
                return
            server.answered = True
            self._cancel_others(cctx, server, now, out)
            self._relay_upstream(server, response, out)
            return
        if server.answered:
            return
        if server.best is None or _preference(response) < _preference(server.best):
            server.best = response
        if status >= 600:
            self._cancel_others(cctx, server, now, out)
        elif any(not b.done for b in server.branches):
            return
        best, server.best = server.best, None
        if best is not None:
            self._relay_upstream(server, best, out)

    def _cancel_others(
        self, winner: ClientContext, server: ServerContext, now: float, out: list[Action]
    ) -> None:
        for branch in server.branches:
            if branch is not winner:
                self._cancel_branch(branch, now, out)

    @staticmethod
    def _synthetic(cctx: ClientContext, status: int) -> Response:
        """Our own answer for a branch that timed out or could not be sent, with the
        branch's Vias, as if its next hop had sent it."""
        return make_response(cctx.tx.request, status, to_tag=_tag())

    def _fail_over(self, cctx: ClientContext, now: float, out: list[Action]) -> bool:
        server = cctx.server
        if not cctx.remaining or cctx.original is None or cctx.provisional:
            return False
        if server is not None and (
            server.cancelled or server.tx.state not in (State.TRYING, State.PROCEEDING)
        ):
            return False
        self.stats["failovers"] += 1
        cctx.timer_c_at = None
        self._send_request(server, cctx.original, cctx.remaining, None, now, out)
        return True

    def _answer_challenge(
        self,
        cctx: ClientContext,
        server: ServerContext,
        response: Response,
        now: float,
        out: list[Action],
    ) -> bool:
        """The next hop (a provider) asks for credentials the processor gave us: send
        the request again with them, CSeq one up (RFC 3261 section 22.2), once per target.
        Later requests of the caller in this dialog get the same offset, and the answers
        to them are given back with the caller's own CSeq."""
        if server.credentials is None or server.challenge_answered:
            return False
        if server.cancelled or server.tx.state not in (State.TRYING, State.PROCEEDING):
            return False
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        request = cctx.tx.request.copy()
        request.pop_first_value("Via")  # ours: the new transaction puts its own
        username, password = server.credentials
        for value in response.get_all(header):
            try:
                challenge = Challenge.parse(value, header)
                credentials = answer(
                    challenge,
                    method=request.method,
                    uri=str(request.uri),
                    username=username,
                    password=password,
                )
            except (ParseError, LocalProtocolError):
                continue  # an algorithm or qop we do not speak: the next challenge
            break
        else:
            return False
        server.challenge_answered = True
        cseq = request.cseq
        request.set("CSeq", f"{cseq.seq + 1} {cseq.method}")
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        request.add(name, str(credentials))
        server.cseq_offset = request.cseq.seq - server.tx.request.cseq.seq
        tag = request.from_.tag
        if tag and server.cseq_offset:
            self._remember_offset(request.call_id, tag, server.cseq_offset, now)
        self.stats["challenges_answered"] += 1
        cctx.timer_c_at = None
        self._send_request(server, request, [cctx.destination], cctx.flow, now, out)
        return True

    def _remember_offset(self, call_id: str, tag: str, offset: int, now: float) -> None:
        offsets = self._cseq_offsets
        offsets[(call_id, tag)] = (offset, now + DIALOG_OFFSET_TTL)
        offsets.move_to_end((call_id, tag))
        while offsets and (
            len(offsets) > DIALOG_OFFSET_MAX or next(iter(offsets.values()))[1] < now
        ):
            offsets.popitem(last=False)

    def _shift_cseq(self, ctx: ServerContext | None, request: Request) -> None:
        """A caller's in-dialog request after we answered a challenge for its INVITE:
        our CSeq, not its own (the callee saw our INVITE's)."""
        tag = request.from_.tag
        if not self._cseq_offsets or not tag:
            return
        if request.to.tag is None and request.method != "ACK":
            return
        found = self._cseq_offsets.get((request.call_id, tag))
        if found is None:
            return
        offset = found[0]
        cseq = request.cseq
        request.set("CSeq", f"{cseq.seq + offset} {cseq.method}")
        if ctx is not None:
            ctx.cseq_offset = offset

    def _next_alternative(
        self, server: ServerContext | None, now: float, out: list[Action]
    ) -> bool:
        """Serial forking (RFC 3261 section 16.7): the target failed, try the next
        Request-URI the processor gave, if the caller still waits."""
        if server is None or server.forwarded is None or server.cancelled:
            return False
        if server.tx.state not in (State.TRYING, State.PROCEEDING):
            return False
        while server.alternatives:
            try:
                uri = parse_uri(server.alternatives.pop(0), what="alternative")
            except ParseError:
                continue
            request = server.forwarded.copy()
            request.set_uri(uri)
            server.challenge_answered = False  # a new target may challenge afresh
            self.stats["serial_forks"] += 1
            self._forward(server, request, MessageResponse(request), now, out)
            return True
        return False

    def _relayed(
        self,
        server: ServerContext,
        job: int,
        message: Request | Response,
        now: float,
        out: list[Action],
    ) -> None:
        """A response back from the processor: sent once every one before it has been."""
        server.relayed[job] = message if isinstance(message, Response) else None
        while server.relays and server.relays[0] in server.relayed:
            response = server.relayed.pop(server.relays.popleft())
            if response is not None:
                self._send_response(server, response, out)

    def _relay_stray(self, response: Response, out: list[Action]) -> None:
        """A response with no transaction (a 2xx retransmitted): by the next Via
        (RFC 3261 section 18.2.2)."""
        response.pop_first_value("Via")
        if "Via" not in response:
            return
        tag = response.from_.tag
        offset = self._cseq_offsets.get((response.call_id, tag)) if tag else None
        if offset is not None:  # a 2xx again, of an INVITE we sent with credentials
            cseq = response.cseq
            response.set("CSeq", f"{cseq.seq - offset[0]} {cseq.method}")
        via = response.top_via
        name = via.transport.lower()
        transport = (
            Transport.parse(name) if name in ("udp", "tcp", "tls", "ws", "wss") else Transport.UDP
        )
        host = (via.received or via.host).strip("[]")
        if transport.reliable:
            destination = NetInterface(host, via.port or _default_port(transport), transport)
        else:
            destination = NetInterface(host, via.rport or via.port or 5060, transport)
            if not is_ip(host):
                return  # a name in a Via without received: nowhere we could send a datagram
        self.stats["stray_responses"] += 1
        out.append(Transmit(_wire(response, transport), destination, None))

    # -- sending upstream

    def _respond(
        self,
        ctx: ServerContext,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, object]] | None = None,
        *,
        out: list[Action],
        keep: bool = True,
    ) -> None:
        response = make_response(
            ctx.tx.request, status, reason, to_tag=_tag(), headers=headers or []
        )
        self._send_response(ctx, response, out, keep)

    def _send_response(
        self, ctx: ServerContext, response: Response, out: list[Action], keep: bool = True
    ) -> None:
        """``keep=False``: a non-INVITE transaction ends with this final answer (no Timer J);
        an INVITE transaction is always kept (it waits for the ACK of a non-2xx answer)."""
        tx = ctx.tx
        if tx.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status == 100 and isinstance(tx, ServerInviteTransaction):
            return  # we sent our own 100 Trying already
        if response.status >= 200:
            self._call_event(ctx, response, out)
        if isinstance(tx, ServerInviteTransaction):
            self._apply_server(ctx, tx.send_response(response, self._now), out)
        else:
            self._apply_server(ctx, tx.send_response(response, self._now, keep), out)

    def _call_event(self, ctx: ServerContext, response: Response, out: list[Action]) -> None:
        """The final answer to a dialog's first INVITE, a 2xx to a BYE, a 2xx to a
        REGISTER that binds."""
        request = ctx.tx.request
        method = request.method
        if method not in ("INVITE", "BYE", "REGISTER") or (method == "INVITE" and request.to.tag):
            return
        status, call_id = response.status, request.call_id
        extra: tuple[tuple[str, str], ...] = ()
        if self.settings.events:
            extra = tuple((n, v) for n, v in request.headers() if n[:2].lower() == "x-")
        if method == "REGISTER":
            if self.settings.events and 200 <= status < 300:
                self._registered(request, response, extra, out)
            return
        who = (str(request.from_.uri), str(request.to.uri))
        self.stats[f"call:{method.lower()}:{status // 100}xx"] += 1
        if method == "INVITE":
            setup = self._now - ctx.started
            if 200 <= status < 300:
                self._calls[call_id] = (self._now, *who)
                while len(self._calls) > CALLS_MAX:
                    self._calls.popitem(last=False)
                self._dialog_began(ctx, request, response)
                out.append(CallEvent("call.started", call_id, *who, status, setup, None, extra))
            else:
                # a challenge to an INVITE without credentials is the first half of digest
                # authentication (RFC 3261 section 22.2, 22.3), not a failed call: the
                # caller asks again with them; one that carried credentials has failed
                challenged = status in (401, 407) and not _has_credentials(request)
                kind = "call.challenged" if challenged else "call.failed"
                out.append(CallEvent(kind, call_id, *who, status, setup, None, extra))
        elif 200 <= status < 300:
            self._dialog_ended(request)
            known = self._calls.pop(call_id, None)
            if known is None:  # it began before this EdgePort knew of it
                out.append(CallEvent("call.ended", call_id, *who, status, extra_headers=extra))
                return
            began, caller, callee = known
            out.append(
                CallEvent(
                    "call.ended", call_id, caller, callee, status, None, self._now - began, extra
                )
            )

    def _dialog_began(self, ctx: ServerContext, request: Request, response: Response) -> None:
        from_tag, to_tag = request.from_.tag, response.to.tag
        if ctx.dialog is None or from_tag is None or to_tag is None:
            return
        self._dialogs[_dialog_key(request.call_id, from_tag, to_tag)] = ctx.dialog
        while len(self._dialogs) > DIALOGS_MAX:
            self._dialogs.popitem(last=False)

    def _dialog_ended(self, request: Request) -> None:
        """A BYE answered 2xx: its dialog is no more (a request in it now goes to the
        processor, which answers as it would for a dialog it never saw)."""
        from_tag, to_tag = request.from_.tag, request.to.tag
        if self._dialogs and from_tag is not None and to_tag is not None:
            self._dialogs.pop(_dialog_key(request.call_id, from_tag, to_tag), None)

    @staticmethod
    def _registered(
        request: Request,
        response: Response,
        extra: tuple[tuple[str, str], ...],
        out: list[Action],
    ) -> None:
        try:
            contacts = response.contacts
        except ParseError:
            return
        expires = max((c.expires or 0 for c in contacts), default=0)
        if expires > 0:
            to = request.to.sip_uri
            aor = f"sip:{to.user}@{to.host}" if to is not None and to.user else str(request.to.uri)
            out.append(Registered(aor, expires, request.call_id, extra))

    def _upstream(self, response: Response, flow: NetInterface) -> Transmit:
        """A response outside any transaction, back where the request came from."""
        return Transmit(_wire(response, flow.transport), self._fallback(response, flow), flow)

    @staticmethod
    def _fallback(response: Response, flow: NetInterface) -> NetInterface:
        """Where a response goes when its connection is gone: a new connection to the
        sent-by port, never to rport (RFC 3261 section 18.2.2; rport is for datagrams)."""
        if not flow.transport.reliable:
            return flow
        try:
            via = response.top_via
        except ParseError:
            return flow
        host = (via.received or via.host).strip("[]")
        return NetInterface(host, via.port or _default_port(flow.transport), flow.transport)

    # -- effects and timers

    def _apply_server(
        self, ctx: ServerContext, effects: Iterable[Effect], out: list[Action]
    ) -> None:
        sent: bytes | None = None
        for effect in effects:
            if isinstance(effect, Send):
                message = effect.message
                assert isinstance(message, Response)
                sent = _wire(message, ctx.flow.transport)
                out.append(Transmit(sent, self._fallback(message, ctx.flow), ctx.flow, ctx))
            elif isinstance(effect, Terminated):
                key = ctx.key if ctx.key is not None else server_key(ctx.tx.request)
                if self._server_txs.get(key) is ctx:
                    del self._server_txs[key]
                if ctx.lingering:
                    ctx.lingering = False
                    self._lingering_count -= 1
                    lingering = self._lingering
                    while lingering and not lingering[0].lingering:  # ended, oldest first
                        lingering.popleft()
                _release(ctx)
        tx = ctx.tx
        if tx.state is State.COMPLETED and isinstance(tx, ServerNonInviteTransaction):
            # answered, it stays for Timer J (32 s over UDP) only to answer retransmissions:
            # it keeps its request and answer as bytes (bench/README.md, "Memory of
            # finished transactions"), parsed again if ever asked for
            tx.pack(sent)
            if not ctx.lingering:
                self._linger(ctx, out)
        deadline = tx.next_deadline()
        if deadline is not None:
            self._push(deadline, "tx", ctx)

    def _linger(self, ctx: ServerContext, out: list[Action]) -> None:
        """Count a transaction that lingers for Timer J. They do not count against
        ``max_transactions`` (they would cap a server at that many non-INVITE requests
        in 32 s, whatever its CPU), but no more than as many of them linger: over it,
        the oldest end now, and only a retransmission that late is answered anew."""
        ctx.lingering = True
        self._lingering_count += 1
        lingering = self._lingering
        lingering.append(ctx)
        limit = self.settings.max_transactions
        while limit and self._lingering_count > limit:
            oldest = lingering.popleft()
            if oldest.lingering:
                self.stats["lingering_ended_early"] += 1
                self._apply_server(oldest, oldest.tx.end(), out)

    def _apply_client(
        self, cctx: ClientContext, effects: Iterable[Effect], now: float, out: list[Action]
    ) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                out.append(
                    Transmit(cctx.tx.wire(effect.message), cctx.destination, cctx.flow, cctx)
                )
            elif isinstance(effect, Deliver):
                assert isinstance(effect.message, Response)
                self._on_client_response(cctx, effect.message, now, out)
            elif isinstance(effect, Timeout | TransportFailed):
                if self._fail_over(cctx, now, out) or self._next_alternative(cctx.server, now, out):
                    continue
                server = cctx.server
                if cctx.origin is not None:
                    out.append(Answered(cctx.origin, None))
                if server is not None and server.forking:
                    status = 408 if isinstance(effect, Timeout) else 503
                    if not cctx.done:
                        self._branch_final(cctx, server, self._synthetic(cctx, status), out)
                    continue
                if server is not None:
                    if isinstance(effect, Timeout):
                        self._respond(server, 408, out=out)
                    else:
                        self._respond(
                            server, 503, "Service Unavailable (Next Hop Unreachable)", out=out
                        )
            elif isinstance(effect, Terminated):
                if self._client_txs.get(cctx.key) is cctx:
                    del self._client_txs[cctx.key]
                _release(cctx.server)
        tx = cctx.tx
        if tx.state is State.COMPLETED or tx.state is State.TERMINATED:
            # its final answer came: it stays only to absorb retransmissions (Timer K, D),
            # or in a stale timer entry; nothing reads its request but as bytes
            cctx.original = None
            tx.pack()
        deadline = tx.next_deadline()
        if deadline is not None:
            self._push(deadline, "tx", cctx)

    def _push(self, deadline: float, kind: str, ctx: ServerContext | ClientContext) -> None:
        heapq.heappush(self._timers, (deadline, next(self._seq), kind, ctx))
        if len(self._timers) >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop the entries of timers that were stopped or moved. A stopped Timer C, or a
        transaction that moved on, leaves its entry behind, and the entry keeps the whole
        transaction alive until its deadline (Timer C: three minutes). Swept whenever the
        heap doubles (the cost per timer stays constant), and every SWEEP_EVERY seconds."""
        # in place: handle_timers may be popping from this very list
        self._timers[:] = [entry for entry in self._timers if _due(entry[0], entry[2], entry[3])]
        heapq.heapify(self._timers)
        self._compact_at = max(COMPACT_FIRST, 2 * len(self._timers))
        self._swept_at = self._now

    def _job(self, what: Job) -> int:
        job = next(self._job_ids)
        self._jobs[job] = what
        return job


def _dialog_key(call_id: str, tag: str, other: str) -> str:
    """A dialog's key from either side: the two tags in order, whoever sends."""
    return f"{call_id}\n{tag}\n{other}" if tag < other else f"{call_id}\n{other}\n{tag}"


def _realms(values: tuple[str, ...]) -> frozenset[str]:
    """The realms of Proxy-Authorization values (none of those that do not parse)."""
    found = set()
    for value in values:
        with contextlib.suppress(ParseError):
            found.add(Credentials.parse(value, "Proxy-Authorization").realm)
    return frozenset(found)


def _has_credentials(request: Request) -> bool:
    """Whether the request carries digest credentials (RFC 3261 section 22)."""
    return (
        request.get("Authorization") is not None or request.get("Proxy-Authorization") is not None
    )


def _preference(response: Response) -> tuple[int, bool, int]:
    """Which final answer goes upstream when every branch failed (smaller is better):
    a 6xx, else the lowest class; answers that say the callee is merely away come last."""
    status = response.status
    return (0 if status >= 600 else status // 100, status in (408, 480, 500, 503), status)


def _frame_for_stream(message: Request | Response) -> None:
    """Content-Length is mandatory on stream transports (RFC 3261 section 20.14): a
    message that came over UDP without one gets it before it goes onto TCP, TLS or WS."""
    if message.content_length is None:
        message.set("Content-Length", len(message.body))


def _wire(message: Request | Response, transport: Transport) -> bytes:
    if transport.reliable:
        _frame_for_stream(message)
    return message.serialize()


def _default_port(transport: Transport) -> int:
    return 5061 if transport is Transport.TLS else 5060


def _branch_hash(request: Request) -> str:
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


def _tag() -> str:
    return os.urandom(5).hex()  # secrets.token_hex, without its three Python calls
