"""The four transaction state machines of RFC 3261 section 17, sans-IO.

Each machine takes messages and the current time, and returns effects: messages to
send, messages to pass up to the transaction user (TU), a timeout, termination. Its
next deadline is ``next_deadline()``; call ``handle_timer(now)`` when it passes. The
owner keeps machines in a dict by :func:`server_key` / :func:`client_key` (sections
17.1.3 and 17.2.3) and drops one when it reports :class:`Terminated`.

Timers (section 17 and table 4): A/B/D client INVITE, E/F/K client non-INVITE,
G/H/I server INVITE, J server non-INVITE. Over reliable transports the retransmit
timers (A, E, G) never run and the wait timers D, I, J, K are zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final

from .builders import build_ack, make_response
from .errors import LocalProtocolError
from .message import Request, Response
from .parser import parse

T1: Final = 0.5  # RTT estimate
T2: Final = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4: Final = 5.0  # maximum duration a message will remain in the network


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"

    # Each member is the only one of its value, so its identity is its hash: a C slot
    # rather than Enum's hash(self._name_) in Python (timers are dict keys)
    __hash__ = object.__hash__


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True, init=False)
class Send:
    """Send this message to the transport (a retransmission or a first send)."""

    message: Request | Response

    def __init__(self, message: Request | Response) -> None:
        # written out, as headers.Via's is: mypyc compiles this one
        object.__setattr__(self, "message", message)


@dataclass(frozen=True, slots=True, init=False)
class Deliver:
    """Pass this message up to the transaction user."""

    message: Request | Response

    def __init__(self, message: Request | Response) -> None:
        object.__setattr__(self, "message", message)  # as Send's


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B, F or H fired: the peer never answered (a client gets a 408 from its TU)."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error (RFC 3261 section 17.1.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The machine is done; drop it from the table."""


Effect = Send | Deliver | Timeout | TransportFailed | Terminated


class Transaction:
    """What the four machines share: the request, the state, the timers."""

    initial: ClassVar[State]

    def __init__(
        self, request: Request, *, reliable: bool, t1: float = T1, t2: float = T2, t4: float = T4
    ) -> None:
        self._request: Request | None = request
        self._request_bytes = b""  # the request while packed (see pack)
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = self.initial
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}

    @property
    def request(self) -> Request:
        if self._request is None:
            request = parse(self._request_bytes)
            assert isinstance(request, Request)
            self._request = request
        return self._request

    def request_bytes(self) -> bytes:
        """The request as it goes on the wire: serialized once, then kept (a client
        transaction's retransmission is the same request again)."""
        if not self._request_bytes:
            self._request_bytes = self.request.serialize()
        return self._request_bytes

    def wire(self, message: Request | Response) -> bytes:
        """``message`` as it goes out: this transaction's request from its kept bytes."""
        return self.request_bytes() if message is self._request else message.serialize()

    def pack(self) -> None:
        """Keep the request as its bytes alone, parsed again when asked for: for a
        transaction that has its final answer and stays only for its wait timer. Messages
        are many small objects, which the cycle collector walks again and again while they
        live, and which scatter the heap (bench/README.md, "Memory of finished
        transactions")."""
        if self._request is not None:
            self.request_bytes()
            self._request = None

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def handle_timer(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for timer, deadline in sorted(self._deadlines.items(), key=lambda item: item[1]):
            if deadline <= now and self._deadlines.get(timer) == deadline:
                del self._deadlines[timer]
                effects += self._fire(timer, now)
        return effects

    def transport_error(self) -> list[Effect]:
        if self.state is State.TERMINATED:
            return []
        return [TransportFailed(), *self._terminate()]

    def _fire(self, timer: Timer, now: float) -> list[Effect]:
        raise NotImplementedError

    def _arm(self, timer: Timer, now: float, interval: float) -> None:
        self._deadlines[timer] = now + interval
        self._intervals[timer] = interval

    def _retransmit_after(self, timer: Timer, now: float, cap: float) -> None:
        self._arm(timer, now, min(self._intervals[timer] * 2, cap))

    def _wait_or_end(self, timer: Timer, now: float, interval: float) -> list[Effect]:
        """Arm a wait timer, or terminate at once when it is zero (reliable transport)."""
        if self.reliable:
            return self._terminate()
        self._arm(timer, now, interval)
        return []

    def end(self) -> list[Effect]:
        """End now, whatever timers are pending (the transaction user drops it)."""
        return [] if self.state is State.TERMINATED else self._terminate()

    def _terminate(self) -> list[Effect]:
        self.state = State.TERMINATED
        self._deadlines.clear()
        return [Terminated()]

    def _illegal(self, what: str) -> LocalProtocolError:
        return LocalProtocolError(f"{type(self).__name__}: {what} in state {self.state.value}")


class ClientInviteTransaction(Transaction):
    """RFC 3261 section 17.1.1, figure 5."""

    initial = State.CALLING

    def start(self, now: float) -> list[Effect]:
        if not self.reliable:
            self._arm(Timer.A, now, self.t1)
        self._arm(Timer.B, now, 64 * self.t1)
        return [Send(self.request)]

    def receive_response(self, response: Response, now: float) -> list[Effect]:
        status = response.status
        match self.state:
            case State.CALLING | State.PROCEEDING if status < 200:
                self.state = State.PROCEEDING
                self._deadlines.pop(Timer.A, None)
                self._deadlines.pop(Timer.B, None)
                return [Deliver(response)]
            case State.CALLING | State.PROCEEDING if status < 300:
                return [Deliver(response), *self._terminate()]
            case State.CALLING | State.PROCEEDING:
                self.state = State.COMPLETED
                self._deadlines.clear()
                self.ack = build_ack(self.request, response)
                return [Send(self.ack), Deliver(response), *self._wait_or_end(Timer.D, now, 32.0)]
            case State.COMPLETED if status >= 300:
                return [Send(self.ack)]
            case _:
                return []

    def _fire(self, timer: Timer, now: float) -> list[Effect]:
        match timer:
            case Timer.A if self.state is State.CALLING:
                self._retransmit_after(Timer.A, now, float("inf"))
                return [Send(self.request)]
            case Timer.B if self.state is State.CALLING:
                return [Timeout(Timer.B), *self._terminate()]
            case Timer.D:
                return self._terminate()
        return []


class ClientNonInviteTransaction(Transaction):
    """RFC 3261 section 17.1.2, figure 6."""

    initial = State.TRYING

    def start(self, now: float) -> list[Effect]:
        if self.request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"{self.request.method} does not use a non-INVITE transaction")
        if not self.reliable:
            self._arm(Timer.E, now, self.t1)
        self._arm(Timer.F, now, 64 * self.t1)
        return [Send(self.request)]

    def receive_response(self, response: Response, now: float) -> list[Effect]:
        match self.state:
            case State.TRYING | State.PROCEEDING if response.status < 200:
                self.state = State.PROCEEDING
                return [Deliver(response)]
            case State.TRYING | State.PROCEEDING:
                self.state = State.COMPLETED
                self._deadlines.clear()
                return [Deliver(response), *self._wait_or_end(Timer.K, now, self.t4)]
            case _:
                return []

    def _fire(self, timer: Timer, now: float) -> list[Effect]:
        match timer:
            case Timer.E if self.state is State.TRYING:
                self._retransmit_after(Timer.E, now, self.t2)
                return [Send(self.request)]
            case Timer.E if self.state is State.PROCEEDING:
                self._arm(Timer.E, now, self.t2)
                return [Send(self.request)]
            case Timer.F if self.state in (State.TRYING, State.PROCEEDING):
                return [Timeout(Timer.F), *self._terminate()]
            case Timer.K:
                return self._terminate()
        return []


class _ServerTransaction(Transaction):
    _last_response: Response | None = None
    _response_bytes: bytes | None = None  # the last response while packed

    @property
    def last_response(self) -> Response | None:
        if self._last_response is None and self._response_bytes is not None:
            response = parse(self._response_bytes)
            assert isinstance(response, Response)
            self._last_response = response
        return self._last_response

    def pack(self, response_bytes: bytes | None = None) -> None:
        """Keep the request and the last response as their bytes alone: for a transaction
        that answered and stays only to answer retransmissions (Timer J, 32 s over UDP).
        ``response_bytes``: the last response as it was just sent, when the caller has it
        (else it is serialized; a message parsed from bytes serializes to them at no cost)."""
        if self._request is not None:  # its bytes, as received when they were given
            if not self._request_bytes:
                self._request_bytes = self._request.serialize()
            self._request = None
        if self._last_response is not None:
            self._response_bytes = response_bytes or self._last_response.serialize()
            self._last_response = None

    def received_as(self, data: bytes) -> None:
        """``data``: the request's bytes as they came, kept instead of the request written
        anew when the transaction is packed. Parsed again from them, the request lacks
        what the server stamped on its top Via since (received and rport, RFC 3581), which
        the matching of a retransmission does not read (section 17.2.3); the request must
        not change otherwise while the transaction lives."""
        self._request_bytes = data

    def _answered(self, response: Response) -> None:
        self._last_response = response
        self._response_bytes = None

    def start(self, now: float) -> list[Effect]:
        return [Deliver(self.request)]

    def matches(self, request: Request) -> bool:
        """The RFC 2543 part of section 17.2.3 that a dict key cannot hold: the To tag."""
        if self.request.top_via.has_magic_cookie:
            return True
        if request.method == "ACK" and self.last_response is not None:
            return request.to.tag == self.last_response.to.tag
        return request.to.tag == self.request.to.tag


class ServerInviteTransaction(_ServerTransaction):
    """RFC 3261 section 17.2.1, figure 7."""

    initial = State.PROCEEDING

    def start(self, now: float, *, send_trying: bool = True) -> list[Effect]:
        """Pass the INVITE up and, unless the TU answers within 200 ms, send 100 Trying."""
        effects: list[Effect] = [Deliver(self.request)]
        if send_trying:
            trying = make_response(self.request, 100)
            self._answered(trying)
            effects.insert(0, Send(trying))
        return effects

    def receive_request(self, request: Request, now: float) -> list[Effect]:
        match self.state, request.method:
            case State.PROCEEDING | State.COMPLETED, "INVITE" if self.last_response is not None:
                return [Send(self.last_response)]
            case State.COMPLETED, "ACK":
                self.state = State.CONFIRMED
                self._deadlines.pop(Timer.G, None)
                self._deadlines.pop(Timer.H, None)
                return self._wait_or_end(Timer.I, now, self.t4)
        return []

    def send_response(self, response: Response, now: float) -> list[Effect]:
        if self.state is not State.PROCEEDING:
            raise self._illegal(f"sending {response.status}")
        self._answered(response)
        if response.status < 200:
            return [Send(response)]
        if response.status < 300:
            return [Send(response), *self._terminate()]
        self.state = State.COMPLETED
        if not self.reliable:
            self._arm(Timer.G, now, self.t1)
        self._arm(Timer.H, now, 64 * self.t1)
        return [Send(response)]

    def _fire(self, timer: Timer, now: float) -> list[Effect]:
        match timer:
            case Timer.G if self.state is State.COMPLETED and self.last_response is not None:
                self._retransmit_after(Timer.G, now, self.t2)
                return [Send(self.last_response)]
            case Timer.H if self.state is State.COMPLETED:
                return [Timeout(Timer.H), *self._terminate()]
            case Timer.I:
                return self._terminate()
        return []


class ServerNonInviteTransaction(_ServerTransaction):
    """RFC 3261 section 17.2.2, figure 8."""

    initial = State.TRYING

    def receive_request(self, request: Request, now: float) -> list[Effect]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []

    def send_response(self, response: Response, now: float, keep: bool = True) -> list[Effect]:
        """``keep=False``: a final answer sent as a stateless UAS sends it (RFC 3261 section
        8.2.7), with no Timer J to absorb retransmissions: the transaction ends at once,
        and a retransmission is a new request, answered anew."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise self._illegal(f"sending {response.status}")
        self._answered(response)
        if response.status < 200:
            self.state = State.PROCEEDING
            return [Send(response)]
        self.state = State.COMPLETED
        if not keep:
            return [Send(response), *self._terminate()]
        return [Send(response), *self._wait_or_end(Timer.J, now, 64 * self.t1)]

    def _fire(self, timer: Timer, now: float) -> list[Effect]:
        return self._terminate() if timer is Timer.J else []


ServerKey = tuple[object, ...]


def server_key(request: Request, method: str | None = None) -> ServerKey:
    """The key of the server transaction a request belongs to (RFC 3261 section 17.2.3).

    An ACK maps to its INVITE's transaction; pass ``method="INVITE"`` to find the INVITE
    a CANCEL is for. With the magic cookie the key is branch, sent-by and method; an RFC
    2543 peer's request is keyed by Request-URI, From tag, Call-ID, CSeq number and top
    Via, and :meth:`matches` checks the To tag.
    """
    via = request.top_via
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    if via.has_magic_cookie:
        return (via.branch, via.sent_by, method)
    return (
        "2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


def client_key(message: Request | Response) -> tuple[str | None, str]:
    """The key of the client transaction a response belongs to (RFC 3261 section 17.1.3):
    the top Via branch and the CSeq method."""
    return (message.top_via.branch, message.cseq.method)
