"""The EdgePort's proxy core in memory: bytes and a fake clock in, actions out. Timer C,
CANCEL, retransmissions and failover are driven in microseconds of test time."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

from sipgrid.api.types import Fork, MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.edgeport.config import DEFAULT_METHODS
from sipgrid.services.edgeport.core import (
    BEHIND_QUEUE,
    COMPACT_FIRST,
    MAX_PROCESSOR_WAIT,
    CallEvent,
    CloseFlow,
    CoreSettings,
    EdgePortCore,
    Process,
    Registered,
    Resolve,
    Transmit,
)
from sipgrid.sip import ParseError, Request, Response, make_response, parse, parse_uri
from sipgrid.sip.digest import verify
from sipgrid.sip.transaction import State

from .helpers import request_bytes

US_UDP = NetInterface("127.0.0.1", 5060, Transport.UDP)
US_TCP = NetInterface("127.0.0.1", 5060, Transport.TCP)
CALLER = NetInterface("127.0.0.1", 7001, Transport.UDP)
LIMIT = MAX_PROCESSOR_WAIT  # the default max_processor_wait
CALLEE = NetInterface("127.0.0.1", 7002, Transport.UDP)
TCP_CALLER = NetInterface("127.0.0.1", 40123, Transport.TCP)

Answer = Callable[[MessageRequest], MessageResponse]


def to(destination: NetInterface) -> Answer:
    """A processor that sends every request to one place and passes responses through."""
    return lambda request: (
        MessageResponse(request.message, destination=destination)
        if isinstance(request.message, Request)
        else MessageResponse(request.message)
    )


class Wire:
    """The core with a processor answered at once (unless ``hold``), a resolver from a
    dict, and a clock that moves only when told."""

    def __init__(self, answer: Answer | None = None, **settings: object) -> None:
        options: dict[str, object] = {
            "ref": "core-test",
            "listening_points": [US_UDP, US_TCP],
            "methods": frozenset(DEFAULT_METHODS),
            "handles_responses": False,
        }
        options.update(settings)
        self.core = EdgePortCore(CoreSettings(**options))  # type: ignore[arg-type]
        self.answer = answer or to(CALLEE)
        self.now = 1000.0
        self.sent: list[Transmit] = []
        self.held: list[Process] = []
        self.hold = False
        self.resolves: list[Resolve] = []
        self.closed: list[NetInterface] = []
        self.processed: list[MessageRequest] = []

    def run(self, actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.sent.append(action)
            elif isinstance(action, Process):
                self.processed.append(action.request)
                if self.hold:
                    self.held.append(action)
                else:
                    self.release(action)
            elif isinstance(action, Resolve):
                self.resolves.append(action)
            elif isinstance(action, CloseFlow):
                self.closed.append(action.flow)

    def release(self, action: Process, result: MessageResponse | str | None = "auto") -> None:
        answer = self.answer(action.request) if result == "auto" else result
        assert not isinstance(answer, str)
        self.run(self.core.processor_answered(action.job, answer, self.now))

    def feed(self, data: bytes, flow: NetInterface = CALLER) -> None:
        self.run(self.core.receive_datagram(data, flow, self.now))

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (deadline := self.core.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.run(self.core.handle_timers(self.now))
        self.now = end

    def take(self) -> list[Transmit]:
        sent, self.sent = self.sent, []
        return sent

    def messages(self, towards: NetInterface | None = None) -> list[Request | Response]:
        return [
            parse(t.data)
            for t in self.take()
            if towards is None or t.destination == towards or t.flow == towards
        ]


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def invite(branch: str = "z9hG4bKc1", call_id: str = "call") -> bytes:
    return request_bytes("INVITE", CALLER.port, branch=branch, call_id=call_id)


def forwarded(wire: Wire, method: str = "INVITE") -> Request:
    requests = [m for m in wire.messages(CALLEE) if isinstance(m, Request)]
    assert requests and requests[-1].method == method, requests
    return requests[-1]


def test_an_answered_request_is_kept_as_bytes_alone() -> None:
    """A non-INVITE transaction that answered stays for Timer J (32 s over UDP) to answer
    retransmissions; meanwhile it keeps its request and answer as bytes (memory, and
    fewer objects for the cycle collector to walk): the request's as they came, not
    written again, and a retransmission still gets the same answer, byte for byte."""
    wire = Wire(lambda r: MessageResponse(make_response(r.message, 200, to_tag="t")))  # type: ignore[arg-type]
    register = request_bytes("REGISTER", CALLER.port, branch="z9hG4bKr1", uri="sip:sip.local")
    wire.feed(register)
    (first,) = wire.take()
    (ctx,) = wire.core._server_txs.values()
    assert ctx.tx.state is State.COMPLETED and ctx.key is not None
    assert ctx.tx._request is None and ctx.tx._last_response is None
    wire.feed(register)
    (again,) = wire.take()
    assert again.data == first.data and wire.core.stats["retransmissions"] == 1
    assert ctx.tx._request is None and ctx.tx._last_response is None  # packed again
    assert ctx.tx.request_bytes() == register  # as it came: its Via without received
    retransmitted = parse(register)
    assert isinstance(retransmitted, Request) and ctx.tx.matches(retransmitted)
    assert ctx.tx.request.top_via.received is None
    wire.advance(33)  # Timer J: gone
    assert wire.core.transactions == (0, 0)


def test_a_challenge_to_a_register_keeps_no_transaction_and_an_invites_407_does() -> None:
    """The processor's 401 or 407 to a non-INVITE request goes out as a stateless UAS
    sends it (RFC 3261 section 8.2.7): its transaction ends at once instead of staying
    32 s for Timer J, so a flood of unauthenticated requests leaves nothing behind
    (section 26.1.5), and a retransmission is challenged again by the processor. Any
    other answer keeps its transaction (the test above), and so does an INVITE's 407,
    which waits for its ACK."""

    def challenge(request: MessageRequest) -> MessageResponse:
        message = request.message
        assert isinstance(message, Request)
        status = 407 if message.method == "INVITE" else 401
        return MessageResponse(make_response(message, status, to_tag="c"))

    wire = Wire(challenge)
    register = request_bytes("REGISTER", CALLER.port, branch="z9hG4bKr2", uri="sip:sip.local")
    wire.feed(register)
    assert statuses(wire.messages(CALLER)) == [401]
    assert wire.core.transactions == (0, 0)
    wire.feed(register)  # a retransmission: a new request, challenged again
    assert statuses(wire.messages(CALLER)) == [401]
    assert len(wire.processed) == 2 and wire.core.stats["retransmissions"] == 0
    assert wire.core.transactions == (0, 0)

    wire.feed(invite(branch="z9hG4bKi2"))
    assert statuses(wire.messages(CALLER)) == [100, 407]
    assert wire.core.transactions == (1, 0)
    wire.feed(invite(branch="z9hG4bKi2"))  # absorbed: the 407 again, not the processor
    assert statuses(wire.messages(CALLER)) == [407] and len(wire.processed) == 3


def test_a_relayed_request_that_got_its_answer_keeps_no_parsed_message() -> None:
    """A relayed BYE's two transactions outlive its answer (Timer J upstream, 32 s over
    UDP; Timer K downstream): meanwhile neither keeps a parsed message, only bytes. The
    request goes out and is retransmitted byte for byte, a retransmitted answer is still
    absorbed, and both transactions end on their timers."""
    wire = Wire()
    wire.feed(request_bytes("BYE", CALLER.port, branch="z9hG4bKb1"))
    (sent,) = downstream(wire)
    wire.advance(0.5)  # Timer E: the same bytes again
    assert [t.data for t in downstream(wire)] == [sent.data]
    wire.feed(reply_to(sent, 200), CALLEE)
    (answer,) = wire.take()
    assert answer.destination == CALLER and parse(answer.data).status == 200  # type: ignore[union-attr]
    del answer
    wire.processed.clear()
    gc.collect()
    parsed = [o for o in gc.get_objects() if isinstance(o, Request | Response)]
    assert parsed == [], parsed
    wire.feed(reply_to(sent, 200), CALLEE)  # a retransmission: absorbed
    assert wire.take() == []
    wire.advance(33)  # Timers J and K: gone
    assert wire.core.transactions == (0, 0)


def test_a_retransmitted_invite_reaches_the_processor_once() -> None:
    wire = Wire(lambda r: MessageResponse(make_response(r.message, 486, to_tag="b")))  # type: ignore[arg-type]
    wire.feed(invite())
    assert statuses(wire.messages(CALLER)) == [100, 486]
    wire.feed(invite())  # the same branch: the last response again, not the processor
    assert statuses(wire.messages(CALLER)) == [486]
    assert len(wire.processed) == 1 and wire.core.stats["retransmissions"] == 1
    wire.advance(0.5)  # Timer G: the 486 again over UDP until the ACK
    assert statuses(wire.messages(CALLER)) == [486]
    ack = invite().replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    wire.feed(ack.replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=b"))
    wire.advance(10)
    assert wire.take() == [] and len(wire.processed) == 1  # the ACK was absorbed here
    assert wire.core.transactions == (0, 0)


def test_timer_c_cancels_a_call_that_rings_for_ever() -> None:
    wire = Wire(timer_c=180.0, cancel_grace=32.0)
    wire.feed(invite())
    request = forwarded(wire)
    wire.feed(make_response(request, 180, to_tag="callee").serialize(), CALLEE)
    assert statuses(wire.messages(CALLER)) == [180]
    wire.advance(179.9)
    assert wire.take() == []
    wire.advance(0.2)  # Timer C fires: CANCEL downstream
    cancel = forwarded(wire, "CANCEL")
    assert cancel.top_via.branch == request.top_via.branch
    wire.feed(make_response(cancel, 200).serialize(), CALLEE)
    wire.advance(32.1)  # the callee never sent its 487: ours after the grace
    assert 487 in statuses(wire.messages(CALLER))
    assert wire.core.stats["timer_c"] == 1


def test_timer_c_is_rearmed_by_each_provisional() -> None:
    wire = Wire(timer_c=10.0)
    wire.feed(invite())
    request = forwarded(wire)
    for _ in range(3):
        wire.advance(8.0)
        wire.feed(make_response(request, 183, to_tag="callee").serialize(), CALLEE)
    wire.take()
    wire.advance(9.9)
    assert wire.take() == []
    wire.advance(0.2)
    assert forwarded(wire, "CANCEL").method == "CANCEL"


def test_a_silent_callee_gets_408_upstream() -> None:
    wire = Wire()
    wire.feed(invite())
    forwarded(wire)
    wire.advance(31.9)
    assert 408 not in statuses(wire.messages(CALLER))
    wire.advance(0.2)  # Timer B: 64*T1
    assert statuses(wire.messages(CALLER)) == [408]


def test_cancel_before_the_processor_answers_gives_487() -> None:
    wire = Wire()
    wire.hold = True
    wire.feed(invite())
    cancel = request_bytes("CANCEL", CALLER.port, branch="z9hG4bKc1", call_id="call")
    wire.feed(cancel)
    assert statuses(wire.messages(CALLER)) == [100, 200, 487]
    wire.release(wire.held.pop())  # the processor's late answer goes nowhere
    assert wire.messages(CALLEE) == []


def test_cancel_after_a_provisional_goes_downstream_and_the_487_comes_back() -> None:
    wire = Wire()
    wire.feed(invite())
    request = forwarded(wire)
    wire.feed(make_response(request, 180, to_tag="callee").serialize(), CALLEE)
    wire.feed(request_bytes("CANCEL", CALLER.port, branch="z9hG4bKc1", call_id="call"))
    sent = wire.take()
    assert 200 in statuses([parse(t.data) for t in sent if t.destination == CALLER])
    cancel = [parse(t.data) for t in sent if t.destination == CALLEE]
    assert [m.method for m in cancel if isinstance(m, Request)] == ["CANCEL"]
    assert isinstance(cancel[0], Request)
    wire.feed(make_response(cancel[0], 200).serialize(), CALLEE)
    wire.feed(make_response(request, 487, to_tag="callee").serialize(), CALLEE)
    relayed = wire.messages()
    assert any(isinstance(m, Request) and m.method == "ACK" for m in relayed)  # hop by hop
    assert 487 in statuses(relayed)


def test_the_proxy_answers_by_itself() -> None:
    wire = Wire(max_message_size=1500)
    wire.feed(request_bytes("INVITE", CALLER.port, max_forwards=0, branch="z9hG4bKa"))
    assert statuses(wire.messages()) == [100, 483]
    wire.feed(request_bytes("PUBLISH", CALLER.port, branch="z9hG4bKb"))
    assert statuses(wire.messages()) == [405]
    wire.feed(
        request_bytes("OPTIONS", CALLER.port, branch="z9hG4bKc", extra="X: " + "a" * 2000 + "\r\n")
    )
    assert statuses(wire.messages()) == [513]
    wire.feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKd\r\n\r\n")
    answer = wire.take()
    assert answer and answer[0].data.startswith(b"SIP/2.0 400 missing")
    wire.feed(b"SIP/2.0 200 OK\r\n\r\n")  # a malformed response: dropped
    assert wire.take() == [] and wire.core.stats["malformed_responses_dropped"] == 1
    assert len(wire.processed) == 0


def test_a_failing_processor_gives_503() -> None:
    wire = Wire()
    wire.hold = True
    wire.feed(request_bytes("OPTIONS", CALLER.port))
    wire.release(wire.held.pop(), None)
    assert statuses(wire.messages(CALLER)) == [503]


def test_a_loop_gives_482() -> None:
    wire = Wire(to(US_UDP))
    wire.feed(request_bytes("MESSAGE", CALLER.port))
    for _ in range(2):  # sent to ourselves: the second time round our Via is below the top
        (looped,) = [t for t in wire.take() if t.destination == US_UDP]
        wire.feed(looped.data, US_UDP)
    assert statuses(wire.messages(US_UDP)) == [482]


def test_responses_go_back_on_the_flow_they_came_on() -> None:
    wire = Wire(lambda r: MessageResponse(make_response(r.message, 200, to_tag="x")))  # type: ignore[arg-type]
    natted = NetInterface("198.51.100.7", 40000, Transport.UDP)
    wire.feed(request_bytes("OPTIONS", 5060).replace(b"127.0.0.1:5060", b"10.0.0.2:5060"), natted)
    (sent,) = wire.take()
    assert sent.flow == natted and sent.destination == natted
    via = parse(sent.data).top_via
    assert via.received == "198.51.100.7" and via.rport == 40000


def test_failover_to_the_next_target_on_a_transport_error_and_on_503() -> None:
    wire = Wire(lambda r: MessageResponse(r.message))  # no destination: locate the URI
    wire.feed(request_bytes("MESSAGE", CALLER.port, uri="sip:1002@trunk.example"))
    (resolve,) = wire.resolves
    assert resolve.target.host == "trunk.example" and resolve.target.transport is None
    first = NetInterface("127.0.0.1", 7100, Transport.TCP)
    second = NetInterface("127.0.0.1", 7200, Transport.UDP)
    third = NetInterface("127.0.0.1", 7300, Transport.UDP)
    wire.run(wire.core.resolved(resolve.job, [first, second, third], wire.now))
    (attempt,) = wire.take()
    assert attempt.destination == first and b"Content-Length: 0" in attempt.data
    wire.run(wire.core.transport_failed(attempt.token, wire.now))  # connection refused
    (attempt,) = wire.take()
    assert attempt.destination == second and b"SIP/2.0/UDP" in attempt.data
    wire.feed(make_response(parse(attempt.data), 503).serialize(), second)  # type: ignore[arg-type]
    (attempt,) = wire.take()
    assert attempt.destination == third
    wire.feed(make_response(parse(attempt.data), 200, to_tag="t").serialize(), third)  # type: ignore[arg-type]
    assert statuses(wire.messages(CALLER)) == [200]
    assert wire.core.stats["failovers"] == 2


def test_nothing_resolves_gives_503() -> None:
    wire = Wire(lambda r: MessageResponse(r.message))
    wire.feed(request_bytes("MESSAGE", CALLER.port, uri="sip:1002@nowhere.invalid"))
    (resolve,) = wire.resolves
    wire.run(wire.core.resolved(resolve.job, [], wire.now))
    assert statuses(wire.messages(CALLER)) == [503]
    assert wire.core.transactions[1] == 0 and wire.core.pending_jobs == 0


def test_content_length_is_added_on_streams() -> None:
    """RFC 3261 section 20.14: a message from UDP without Content-Length gets one on TCP,
    in both directions (a UDP phone's 180 and 200 to a TCP phone, and its requests)."""
    callee_tcp = NetInterface("127.0.0.1", 7002, Transport.TCP)
    wire = Wire(to(callee_tcp))
    no_length = invite().replace(b"Content-Length: 0\r\n", b"")
    wire.feed(no_length)
    (sent,) = [t for t in wire.take() if t.destination == callee_tcp]
    assert b"\r\nContent-Length: 0\r\n" in sent.data
    # and a response from UDP relayed to a TCP caller
    wire = Wire(to(CALLEE))
    wire.run(
        wire.core.receive_message(parse(invite().replace(b"/UDP", b"/TCP")), TCP_CALLER, wire.now)
    )
    request = forwarded(wire)
    ringing = (
        make_response(request, 180, to_tag="b").serialize().replace(b"Content-Length: 0\r\n", b"")
    )
    assert b"Content-Length" not in ringing
    wire.feed(ringing, CALLEE)
    relayed = [t for t in wire.take() if t.flow == TCP_CALLER]
    assert relayed and b"\r\nContent-Length: 0\r\n" in relayed[-1].data


def test_a_response_over_a_stream_falls_back_to_the_sent_by_port_not_rport() -> None:
    """RFC 3261 section 18.2.2: when the connection is gone, open one to the sent-by
    address; rport (RFC 3581) is for datagrams."""
    wire = Wire(lambda r: MessageResponse(make_response(r.message, 200, to_tag="x")))  # type: ignore[arg-type]
    data = request_bytes("OPTIONS", 5070).replace(b"/UDP", b"/TCP")
    wire.run(wire.core.receive_message(parse(data), TCP_CALLER, wire.now))
    (sent,) = wire.take()
    assert sent.flow == TCP_CALLER
    assert sent.destination == NetInterface("127.0.0.1", 5070, Transport.TCP)


def test_a_stream_that_cannot_be_framed_is_answered_and_closed() -> None:
    wire = Wire()
    error = ParseError("Content-Length is required", header="Content-Length")
    error.fields = [
        ("cseq", "1 OPTIONS"),
        ("call-id", "x"),
        ("via", "SIP/2.0/TCP h;branch=z9hG4bKx"),
    ]
    wire.run(wire.core.stream_error(error, TCP_CALLER))
    assert wire.closed == [TCP_CALLER]


def test_a_flooding_source_is_told_once_a_second_then_dropped_and_others_pass() -> None:
    wire = Wire(
        lambda r: MessageResponse(make_response(r.message, 200, to_tag="x")),  # type: ignore[arg-type]
        requests_per_second=10,
    )
    flood = NetInterface("127.0.0.2", 5999, Transport.UDP)
    for n in range(200):  # 200 requests within the same instant
        wire.feed(request_bytes("OPTIONS", 5999, branch=f"z9hG4bKf{n}"), flood)
    answers = wire.messages(flood)
    assert statuses(answers) == [200] * 10 + [503]  # the bucket, then one 503, then silence
    assert answers[-1].get("Retry-After") == "5"
    assert wire.core.stats["rate_limited"] == 190
    wire.feed(request_bytes("OPTIONS", CALLER.port, branch="z9hG4bKgood"))  # another source
    assert statuses(wire.messages(CALLER)) == [200]
    wire.now += 0.5  # half a second later: five more tokens, no second 503 yet
    for n in range(7):
        wire.feed(request_bytes("OPTIONS", 5999, branch=f"z9hG4bKg{n}"), flood)
    assert statuses(wire.messages(flood)) == [200] * 5
    wire.now += 1.0
    for n in range(12):
        wire.feed(request_bytes("OPTIONS", 5999, branch=f"z9hG4bKh{n}"), flood)
    assert statuses(wire.messages(flood)) == [200] * 10 + [503]


def test_a_full_transaction_table_answers_503_with_retry_after() -> None:
    wire = Wire(max_transactions=3)
    wire.hold = True  # the processor never answers: the transactions stay
    for n in range(3):
        wire.feed(request_bytes("OPTIONS", CALLER.port, branch=f"z9hG4bKt{n}"))
    wire.take()
    wire.feed(request_bytes("OPTIONS", CALLER.port, branch="z9hG4bKt9"))
    (busy,) = wire.messages(CALLER)
    assert isinstance(busy, Response) and busy.status == 503 and busy.get("Retry-After") == "5"
    assert len(wire.processed) == 3


def test_answered_transactions_that_linger_do_not_fill_the_table() -> None:
    """A non-INVITE transaction that answered lingers 32 s (Timer J) only to answer
    retransmissions. Counted against maxTransactions, they capped a registrar at
    maxTransactions / 32 exchanges a second (50,000: 1,560 REGISTERs/s) whatever its CPU:
    a sustained 2000/s got 503s after 25 s. They count apart, and over the same limit the
    oldest of them end early: memory stays bounded, and only a retransmission more than
    that many transactions late is answered anew instead of from the table."""
    answer: Answer = lambda r: MessageResponse(make_response(r.message, 200, to_tag="t"))  # type: ignore[arg-type]  # noqa: E731
    wire = Wire(answer, max_transactions=3)

    def register(n: int) -> bytes:
        return request_bytes("REGISTER", CALLER.port, branch=f"z9hG4bKl{n}", uri="sip:sip.local")

    for n in range(10):
        wire.feed(register(n))
        wire.advance(1.0)
    assert statuses(wire.messages(CALLER)) == [200] * 10
    assert len(wire.processed) == 10
    assert len(wire.core._server_txs) == 3  # the three newest linger, the rest ended early
    assert wire.core.stats["lingering_ended_early"] == 7
    wire.feed(register(9))  # the newest, again: answered from its transaction
    assert statuses(wire.messages(CALLER)) == [200] and len(wire.processed) == 10
    wire.feed(register(0))  # the oldest, again: a new request now
    assert statuses(wire.messages(CALLER)) == [200] and len(wire.processed) == 11
    # requests in progress still count against the limit
    wire.hold = True
    for n in range(3):
        wire.feed(request_bytes("OPTIONS", CALLER.port, branch=f"z9hG4bKo{n}"))
    wire.take()
    wire.feed(request_bytes("OPTIONS", CALLER.port, branch="z9hG4bKo9"))
    assert statuses(wire.messages(CALLER)) == [503]
    wire.hold = False
    for held in wire.held:
        wire.release(held)
    wire.advance(40.0)  # Timer J: all gone, nothing left behind
    assert not wire.core._server_txs and not wire.core._lingering


def test_a_processor_that_is_behind_gets_no_new_requests_but_dialogs_go_on() -> None:
    wire = Wire()
    wire.hold = True
    wire.feed(invite("z9hG4bKold", "old"))
    wire.advance(1.25 * LIMIT)
    wire.feed(invite("z9hG4bKone", "one"))  # one slow answer is not a queue: asked
    wire.advance(0.5 * LIMIT)
    for n in range(BEHIND_QUEUE - 2):
        wire.feed(invite(f"z9hG4bKq{n}", f"q{n}"))  # the oldest waited 1.75 limits: asked
    assert len(wire.processed) == BEHIND_QUEUE
    wire.take()
    wire.feed(invite("z9hG4bKnew", "new"))  # a queue, the oldest over the limit
    (busy,) = [m for m in wire.messages(CALLER) if isinstance(m, Response) and m.status >= 200]
    assert busy.status == 503 and busy.get("Retry-After") == "5"
    bye = request_bytes("BYE", CALLER.port, branch="z9hG4bKbye", call_id="up")
    wire.feed(bye.replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=b"))
    assert wire.processed[-1].method == "BYE"  # a dialog's request goes on
    assert wire.core.stats["processor_behind"] == 1
    wire.release(wire.held.pop(0))  # the oldest answered: the next is half a limit old
    wire.feed(invite("z9hG4bKafter", "after"))
    assert wire.processed[-1].message.call_id == "after"


def behind(wire: Wire) -> None:
    """A queue whose oldest has waited 1.25 times ``max_processor_wait``."""
    wire.hold = True
    for n in range(BEHIND_QUEUE):
        wire.feed(invite(f"z9hG4bKq{n}", f"q{n}"))
    wire.advance(1.25 * LIMIT)
    wire.take()


def test_a_processor_that_is_behind_still_gets_the_answers_to_its_challenges() -> None:
    """An avalanche of REGISTERs (all phones back after an outage): a request that
    carries credentials answers a challenge the processor already sent, and refusing it
    would waste that work and fail the exchange; so it goes on, where a new request gets
    503 at once, without a transaction (a stateless UAS, RFC 3261 section 26.1.5)."""
    wire = Wire()
    behind(wire)
    asked = len(wire.processed)
    tables = len(wire.core._server_txs)
    register = request_bytes("REGISTER", CALLER.port, branch="z9hG4bKr0", uri="sip:sip.local")
    wire.feed(register)
    (busy,) = wire.messages(CALLER)
    assert isinstance(busy, Response) and busy.status == 503 and busy.get("Retry-After") == "5"
    assert len(wire.core._server_txs) == tables  # nothing kept for it
    assert len(wire.processed) == asked
    for n, name in enumerate(("Authorization", "Proxy-Authorization")):
        credentials = f'{name}: Digest username="1001", realm="sip.local", nonce="n", uri="sip:sip.local", response="r"\r\n'
        wire.feed(
            request_bytes(
                "REGISTER",
                CALLER.port,
                branch=f"z9hG4bKa{n}",
                uri="sip:sip.local",
                extra=credentials,
            )
        )
        assert len(wire.processed) == asked + n + 1, name
    assert wire.core.stats["processor_behind"] == 1
    # twice the limit: credentials or not, no more (a flood could carry made-up ones)
    wire.advance(LIMIT)
    wire.feed(
        request_bytes(
            "REGISTER", CALLER.port, branch="z9hG4bKa9", uri="sip:sip.local", extra=credentials
        )
    )
    assert statuses(wire.messages(CALLER)) == [503]
    assert len(wire.processed) == asked + 2


def test_an_invite_refused_when_behind_keeps_its_transaction_for_the_ack() -> None:
    wire = Wire()
    behind(wire)
    tables = len(wire.core._server_txs)
    wire.feed(invite("z9hG4bKlate", "late"))
    assert [s for s in statuses(wire.messages(CALLER)) if s >= 200] == [503]
    assert len(wire.core._server_txs) == tables + 1


def test_no_wait_limit_with_max_processor_wait_0() -> None:
    wire = Wire(max_processor_wait=0)
    wire.hold = True
    for n in range(BEHIND_QUEUE):
        wire.feed(invite(f"z9hG4bKq{n}", f"q{n}"))
    wire.advance(60)
    wire.feed(invite("z9hG4bKnew", "new"))
    assert len(wire.processed) == BEHIND_QUEUE + 1
    assert not wire.core.stats["processor_behind"]


def downstream(wire: Wire) -> list[Transmit]:
    """What went anywhere but back to the caller; the caller got nothing but a 100."""
    sent = wire.take()
    assert statuses([parse(t.data) for t in sent if t.destination == CALLER]) in ([], [100])
    return [t for t in sent if t.destination != CALLER]


def reply_to(sent: Transmit, status: int) -> bytes:
    request = parse(sent.data)
    assert isinstance(request, Request)
    return make_response(request, status, to_tag="downstream").serialize()


def serial(*uris: str) -> Answer:
    """A processor that retargets a request to the first URI, the rest as alternatives."""

    def answer(request: MessageRequest) -> MessageResponse:
        message = request.message
        if isinstance(message, Request):
            message.set_uri(parse_uri(uris[0]))
            return MessageResponse(message, alternatives=list(uris[1:]))
        return MessageResponse(message)

    return answer


def test_serial_forking_tries_the_next_uri_on_5xx_timeout_and_transport_error() -> None:
    """RFC 3261 section 16.7: 408, 5xx, no answer or no connection moves on to the
    next target; the caller sees only the last answer."""
    wire = Wire(
        serial(
            "sip:555@127.0.0.1:7101",
            "sip:555@127.0.0.1:7102",
            "sip:555@127.0.0.1:7103;transport=tcp",
            "sip:555@127.0.0.1:7104",
        )
    )
    wire.feed(invite())
    (attempt,) = downstream(wire)
    first = parse(attempt.data)
    assert isinstance(first, Request) and attempt.destination.port == 7101
    assert str(first.uri) == "sip:555@127.0.0.1:7101"
    wire.feed(reply_to(attempt, 500), attempt.destination)
    sent = downstream(wire)
    assert [t.destination.port for t in sent] == [7101, 7102]  # the ACK of the 500, the next
    second = parse(sent[1].data)
    assert isinstance(second, Request) and second.top_via.branch != first.top_via.branch
    wire.advance(32.1)  # Timer B: the second never answers
    sent = [t for t in downstream(wire) if t.destination.port != 7102]
    assert [t.destination.port for t in sent] == [7103]
    wire.run(wire.core.transport_failed(sent[0].token, wire.now))  # connection refused
    (attempt,) = [t for t in downstream(wire) if t.destination.port == 7104]
    wire.feed(reply_to(attempt, 486), attempt.destination)
    assert statuses(wire.messages(CALLER)) == [486]
    assert wire.core.stats["serial_forks"] == 3


def test_serial_forking_stops_at_a_4xx_or_6xx_and_ends_with_the_last_5xx_503_as_500() -> None:
    for status, tries, upstream in ((404, 1, 404), (603, 1, 603), (503, 2, 500), (502, 2, 502)):
        wire = Wire(serial("sip:555@127.0.0.1:7101", "sip:555@127.0.0.1:7102"))
        wire.feed(invite())
        for _ in range(tries):
            (attempt,) = [t for t in downstream(wire) if b"INVITE sip" in t.data]
            wire.feed(reply_to(attempt, status), attempt.destination)
        assert statuses(wire.messages(CALLER)) == [upstream], status  # a 503 becomes 500
        assert wire.core.stats["serial_forks"] == tries - 1


def with_credentials(request: MessageRequest) -> MessageResponse:
    """A processor that sends requests to CALLEE with a trunk's outbound credentials."""
    if isinstance(request.message, Request):
        return MessageResponse(
            request.message, destination=CALLEE, credentials=("sipgrid", "provider-secret")
        )
    return MessageResponse(request.message)


def test_a_providers_challenge_is_answered_and_the_callers_cseq_kept() -> None:
    """RFC 3261 section 22.2: the INVITE again with credentials and CSeq one up; the
    caller sees its own CSeq in every answer, and its ACK and BYE get ours."""
    wire = Wire(with_credentials)
    wire.feed(invite())
    first = forwarded(wire)
    assert first.cseq.seq == 1 and "Proxy-Authorization" not in first
    challenge = make_response(first, 407, to_tag="p1")
    challenge.add("Proxy-Authenticate", 'Digest realm="provider", nonce="n0nce", qop="auth"')
    wire.feed(challenge.serialize(), CALLEE)
    sent = [m for m in wire.messages(CALLEE) if isinstance(m, Request)]
    assert [m.method for m in sent] == ["ACK", "INVITE"]  # the 407's ACK, then again
    again = sent[1]
    assert len(again.get_all("Via")) == 2  # ours (a new branch) and the caller's
    (creds,) = again.proxy_authorizations
    assert creds.username == "sipgrid" and creds.realm == "provider"
    assert verify(creds, "INVITE", password="provider-secret") and again.cseq.seq == 2
    wire.feed(make_response(again, 200, to_tag="p1").serialize(), CALLEE)
    (ok,) = [m for m in wire.messages(CALLER) if isinstance(m, Response) and m.status == 200]
    assert ok.cseq.seq == 1  # the caller's own
    wire.feed(make_response(again, 200, to_tag="p1").serialize(), CALLEE)  # the 200 again
    (ok,) = [m for m in wire.messages(CALLER) if isinstance(m, Response)]
    assert (ok.status, ok.cseq.seq) == (200, 1)
    in_dialog = invite().replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=p1")
    ack = in_dialog.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    wire.feed(ack.replace(b"z9hG4bKc1", b"z9hG4bKack"))
    assert forwarded(wire, "ACK").cseq.seq == 2  # the ACK of a 2xx has the INVITE's CSeq
    bye = in_dialog.replace(b"INVITE sip", b"BYE sip").replace(b"1 INVITE", b"2 BYE")
    wire.feed(bye.replace(b"z9hG4bKc1", b"z9hG4bKbye"))
    sent_bye = forwarded(wire, "BYE")
    assert sent_bye.cseq.seq == 3
    wire.feed(make_response(sent_bye, 200).serialize(), CALLEE)
    (bye_ok,) = [m for m in wire.messages(CALLER) if isinstance(m, Response)]
    assert (bye_ok.status, bye_ok.cseq.seq, bye_ok.cseq.method) == (200, 2, "BYE")
    assert wire.core.stats["challenges_answered"] == 1


def test_a_second_challenge_or_one_without_credentials_goes_to_the_caller() -> None:
    for answer_with, invites in ((with_credentials, 2), (to(CALLEE), 1)):
        wire = Wire(answer_with)
        wire.feed(invite())
        sent = wire.take()
        for _ in range(invites):
            (request,) = [parse(t.data) for t in sent if b"INVITE sip" in t.data]
            assert isinstance(request, Request)
            refused = make_response(request, 401, to_tag="p")
            refused.add("WWW-Authenticate", 'Digest realm="provider", nonce="n", algorithm=MD5')
            wire.feed(refused.serialize(), CALLEE)
            sent = wire.take()
        finals = statuses([parse(t.data) for t in sent if t.destination == CALLER])
        assert finals == [401]  # wrong credentials are not tried for ever


PHONE_1 = NetInterface("127.0.0.1", 7201, Transport.UDP)
PHONE_2 = NetInterface("127.0.0.1", 7202, Transport.UDP)


def two_phones(request: MessageRequest) -> MessageResponse:
    """A processor that rings both phones of the callee at once."""
    message = request.message
    if not isinstance(message, Request):
        return MessageResponse(message)
    forks = [
        Fork(f"sip:1002@{p.host}:{p.port}", p, record_route=(f"<sip:us;lr;phone={p.port}>",))
        for p in (PHONE_1, PHONE_2)
    ]
    return MessageResponse(message, forks=forks)


def branches(wire: Wire) -> dict[int, Request]:
    """The requests sent downstream, by destination port."""
    sent: dict[int, Request] = {}
    for transmit in wire.take():
        message = parse(transmit.data)
        if transmit.destination != CALLER and isinstance(message, Request):
            sent[transmit.destination.port] = message
    return sent


def ringing(wire: Wire) -> dict[int, Request]:
    """Both branches' INVITEs, answered with 180 (by destination port)."""
    invites = branches(wire)
    assert sorted(invites) == [7201, 7202]
    for port, request in invites.items():
        assert request.get("Record-Route") == f"<sip:us;lr;phone={port}>"
        assert str(request.uri) == f"sip:1002@127.0.0.1:{port}"
        phone = PHONE_1 if port == 7201 else PHONE_2
        wire.feed(make_response(request, 180, to_tag=f"t{port}").serialize(), phone)
    return invites


def test_parallel_forking_the_first_2xx_wins_and_the_other_phone_is_cancelled() -> None:
    wire = Wire(two_phones)
    wire.feed(invite())
    invites = ringing(wire)
    assert statuses(wire.messages(CALLER)) == [180, 180]
    wire.feed(make_response(invites[7202], 200, to_tag="t7202").serialize(), PHONE_2)
    sent = wire.take()
    assert statuses([parse(t.data) for t in sent if t.destination == CALLER]) == [200]
    (cancel,) = [parse(t.data) for t in sent if t.destination == PHONE_1]
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    wire.feed(make_response(cancel, 200).serialize(), PHONE_1)
    wire.feed(make_response(invites[7201], 487, to_tag="t7201").serialize(), PHONE_1)
    assert statuses(wire.messages(CALLER)) == []  # the 487 stays here


def test_parallel_forking_waits_for_every_branch_and_sends_the_best_answer() -> None:
    wire = Wire(two_phones)
    wire.feed(invite())
    invites = ringing(wire)
    wire.take()
    wire.feed(make_response(invites[7201], 480, to_tag="t7201").serialize(), PHONE_1)
    assert statuses(wire.messages(CALLER)) == []  # the other phone still rings
    wire.feed(make_response(invites[7202], 486, to_tag="t7202").serialize(), PHONE_2)
    assert statuses(wire.messages(CALLER)) == [486]  # busy beats away


def test_parallel_forking_a_6xx_ends_the_search_and_a_timeout_counts_as_408() -> None:
    wire = Wire(two_phones)
    wire.feed(invite())
    invites = ringing(wire)
    wire.take()
    wire.feed(make_response(invites[7201], 603, to_tag="t7201").serialize(), PHONE_1)
    sent = wire.take()
    assert statuses([parse(t.data) for t in sent if t.destination == CALLER]) == [603]
    to_phone_2 = [parse(t.data) for t in sent if t.destination == PHONE_2]
    assert [m.method for m in to_phone_2 if isinstance(m, Request)] == ["CANCEL"]

    wire = Wire(two_phones)
    wire.feed(invite())
    request = branches(wire)[7202]
    wire.feed(make_response(request, 404, to_tag="t").serialize(), PHONE_2)
    assert statuses(wire.messages(CALLER)) == []
    wire.advance(32.1)  # Timer B on the silent phone: its branch ends as a 408
    assert statuses(wire.messages(CALLER)) == [404]


def test_a_cancel_from_the_caller_cancels_every_branch() -> None:
    wire = Wire(two_phones)
    wire.feed(invite())
    ringing(wire)
    wire.take()
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    wire.feed(cancel)
    sent = wire.take()
    cancels = sorted(t.destination.port for t in sent if t.destination != CALLER)
    assert cancels == [7201, 7202]


def sent_to_callee(wire: Wire) -> Transmit:
    return [t for t in wire.take() if t.destination == CALLEE][-1]


def test_calls_are_told_started_failed_and_ended_with_their_times() -> None:
    """CallEvent and Registered actions: what logs, metrics and NATS events come from."""
    wire = Wire(events=True)
    events: list[object] = []
    keep = wire.run

    def run(actions: Sequence[object]) -> None:
        events.extend(a for a in actions if isinstance(a, CallEvent | Registered))
        keep(actions)

    wire.run = run  # type: ignore[method-assign]
    wire.feed(invite(call_id="answered").replace(b"Max-Forwards", b"X-Room: 7\r\nMax-Forwards"))
    sent = sent_to_callee(wire)
    wire.now += 1.5
    wire.feed(reply_to(sent, 200), CALLEE)
    wire.now += 30
    bye = request_bytes("BYE", CALLER.port, branch="z9hG4bKbye", call_id="answered")
    wire.feed(bye.replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=downstream"))
    wire.feed(reply_to(sent_to_callee(wire), 200), CALLEE)
    wire.feed(invite(branch="z9hG4bKc2", call_id="busy"))
    wire.feed(reply_to(sent_to_callee(wire), 486), CALLEE)
    started, ended, failed = events
    assert isinstance(started, CallEvent) and isinstance(ended, CallEvent)
    assert (started.kind, started.status, started.setup) == ("call.started", 200, 1.5)
    assert started.caller == "sip:1001@sip.local" and started.callee == "sip:1002@sip.local"
    assert started.extra_headers == (("X-Room", "7"),)
    assert (ended.kind, ended.call_id, ended.duration) == ("call.ended", "answered", 30.0)
    assert isinstance(failed, CallEvent) and (failed.kind, failed.status) == ("call.failed", 486)
    assert wire.core.calls_in_progress == 0
    assert wire.core.stats["call:invite:2xx"] == 1 and wire.core.stats["call:invite:4xx"] == 1
    # a REGISTER's 2xx that binds
    registrar = Wire(
        events=True,
        answer=lambda r: MessageResponse(
            make_response(
                r.message,  # type: ignore[arg-type]
                200,
                to_tag="r",
                headers=[("Contact", "<sip:1001@127.0.0.1:7001>;expires=120")],
            )
        ),
    )
    told: list[object] = []
    registrar.run = lambda actions: told.extend(  # type: ignore[method-assign]
        a for a in actions if isinstance(a, Registered)
    )
    registrar.run(registrar.core.receive_datagram(request_bytes("REGISTER", 7001), CALLER, 0.0))
    held = registrar.core.receive_datagram(
        request_bytes("REGISTER", 7001, branch="z9hG4bKr2", call_id="r2"), CALLER, 0.0
    )
    for action in held:
        if isinstance(action, Process):
            told.extend(
                a
                for a in registrar.core.processor_answered(
                    action.job, registrar.answer(action.request), 0.0
                )
                if isinstance(a, Registered)
            )
    assert told and isinstance(told[0], Registered)
    assert (told[0].aor, told[0].expires) == ("sip:1002@sip.local", 120)


def test_a_challenge_is_told_apart_from_a_failed_call() -> None:
    """A 407 to an INVITE without credentials is the first half of digest authentication:
    ``call.challenged`` (logged at debug, no event); a 407 to one that carried them is
    ``call.failed``. Both count as 4xx answers."""

    def challenge(request: MessageRequest) -> MessageResponse:
        assert isinstance(request.message, Request)
        return MessageResponse(make_response(request.message, 407, to_tag="c"))

    wire = Wire(challenge, events=True)
    events: list[CallEvent] = []
    keep = wire.run

    def run(actions: Sequence[object]) -> None:
        events.extend(a for a in actions if isinstance(a, CallEvent))
        keep(actions)

    wire.run = run  # type: ignore[method-assign]
    wire.feed(invite(call_id="first"))
    credentials = (
        b'Proxy-Authorization: Digest username="1001", realm="sip.local", nonce="n", '
        b'uri="sip:1002@sip.local", response="00112233445566778899aabbccddeeff"\r\n'
    )
    wire.feed(invite("z9hG4bKc2", "again").replace(b"Max-Forwards", credentials + b"Max-Forwards"))
    assert [(e.kind, e.call_id, e.status) for e in events] == [
        ("call.challenged", "first", 407),
        ("call.failed", "again", 407),
    ]
    assert wire.core.stats["call:invite:4xx"] == 2


def test_a_draining_edgeport_refuses_new_dialogs_and_lets_calls_finish() -> None:
    wire = Wire()
    wire.feed(invite(call_id="before"))
    wire.feed(reply_to(sent_to_callee(wire), 200), CALLEE)
    assert wire.core.calls_in_progress == 1 and wire.core.busy == 0
    wire.core.settings.draining = True
    wire.feed(invite(branch="z9hG4bKnew", call_id="after"))
    refused = [m for m in wire.messages(CALLER) if isinstance(m, Response) and m.status == 503]
    assert refused and refused[0].get("Retry-After") and "Shutting Down" in refused[0].reason
    bye = request_bytes("BYE", CALLER.port, branch="z9hG4bKbye", call_id="before")
    wire.feed(bye.replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=downstream"))
    assert wire.core.busy == 2  # the BYE goes on to the callee: both of its transactions
    wire.feed(reply_to(sent_to_callee(wire), 200), CALLEE)
    assert wire.core.calls_in_progress == 0 and wire.core.busy == 0


def test_a_finished_call_is_freed_without_the_cycle_collector() -> None:
    """Once every transaction of a call has ended, nothing of it is left for a full
    collection to find: the all-in-one collects rarely (tune_gc), and calls left in
    reference cycles grew a busy server by some 29 KB each."""
    wire = Wire()
    gc.collect()
    gc.disable()
    try:
        wire.feed(invite())
        request = forwarded(wire)
        wire.feed(make_response(request, 180, to_tag="b").serialize(), CALLEE)
        wire.feed(make_response(request, 200, to_tag="b").serialize(), CALLEE)
        del request
        wire.take()
        wire.advance(200)  # Timers L and M end the transactions; Timer C's entries go too
        assert wire.core.transactions == (0, 0) and wire.core.next_deadline() is None
        wire.take()  # what the test kept of the call: the actions it was given
        wire.processed.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("sipgrid")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == [], left


def test_stopped_timers_do_not_keep_finished_calls_alive() -> None:
    """Each provisional answer moves Timer C (three minutes), and a final answer stops
    it; a callee that never answers ends its transaction at Timer B, Timer C still set.
    The stale entries are swept out, not kept until their deadline."""
    wire = Wire()
    for call in range(1500):
        wire.feed(invite(branch=f"z9hG4bKc{call}", call_id=f"call-{call}"))
        request = forwarded(wire)
        for status in (100, 180, 183, 200) if call % 4 == 0 else ():  # most stay silent
            wire.feed(make_response(request, status, to_tag="b").serialize(), CALLEE)
        wire.take()
    wire.advance(64)  # every transaction has ended; Timer C's entries would last 180 s
    assert wire.core.transactions == (0, 0)
    assert len(wire.core._timers) < COMPACT_FIRST


def to_phone_on(flow: NetInterface, contact: NetInterface) -> Answer:
    """A processor that sends every request to a phone registered over ``flow`` (the
    connection) with ``contact`` in its Contact."""
    return lambda request: MessageResponse(request.message, destination=contact, target_flow=flow)


def test_a_worker_sends_on_worker_0s_connection_not_to_the_contact() -> None:
    """Worker 1 of several never sees a connection open (they are worker 0's): a request
    for a phone registered over TCP must still go on that connection, which worker 0 holds,
    not to the phone's Contact (behind NAT, or a WebSocket's .invalid host)."""
    contact = NetInterface("192.0.2.9", 5060, Transport.TCP)
    alone = Wire(to_phone_on(TCP_CALLER, contact))
    alone.feed(invite())
    sent = [t for t in alone.take() if t.data.startswith(b"INVITE")]
    assert [(t.flow, t.destination) for t in sent] == [(None, contact)]  # the flow is closed

    worker = Wire(to_phone_on(TCP_CALLER, contact), worker=1, connections_elsewhere=True)
    worker.feed(invite())
    sent = [t for t in worker.take() if t.data.startswith(b"INVITE")]
    # on the flow while worker 0 has it open, else to the Contact, as worker 0 alone would
    assert [(t.flow, t.destination) for t in sent] == [(TCP_CALLER, contact)]
    assert parse(sent[0].data).top_via.branch.startswith("z9hG4bKsg01")  # type: ignore[union-attr]


def test_a_worker_sends_to_a_websocket_phone_on_its_flow_alone() -> None:
    """A WebSocket phone's Contact names a host no one can reach (RFC 7118: .invalid):
    worker 0 alone resolves it and fails unless the flow is open; another worker hands the
    request to worker 0 for that flow."""
    flow = NetInterface("127.0.0.1", 40125, Transport.WSS)
    contact = NetInterface("df7jal23ls0d.invalid", 5060, Transport.WSS)
    points = [US_UDP, US_TCP, NetInterface("127.0.0.1", 5061, Transport.WSS)]
    alone = Wire(to_phone_on(flow, contact), listening_points=points)
    alone.feed(invite())
    assert not [t for t in alone.take() if t.data.startswith(b"INVITE")]
    assert [r.target.host for r in alone.resolves] == ["df7jal23ls0d.invalid"]

    worker = Wire(
        to_phone_on(flow, contact), listening_points=points, worker=2, connections_elsewhere=True
    )
    worker.feed(invite())
    sent = [t for t in worker.take() if t.data.startswith(b"INVITE")]
    assert [(t.flow, t.destination) for t in sent] == [(flow, flow)] and not worker.resolves


# -- dialogs the processor lets the EdgePort follow (MessageResponse.follow_dialog)

OUR_ROUTE = "<sip:127.0.0.1:5060;lr;sg-ftag=f1;sg-callee=udp~127.0.0.1~7002;sg-sig=5ea1ed>"


def record_routing(request: MessageRequest) -> MessageResponse:
    """A processor as Connect answers: an INVITE on to the callee with our Record-Route,
    letting the EdgePort follow its dialog; any other request on to the callee."""
    message = request.message
    if not isinstance(message, Request):
        return MessageResponse(message)
    if message.method == "INVITE" and message.to.tag is None:
        message.add("Record-Route", OUR_ROUTE, first=True)
        # its own realm's credentials taken out, another's left (as Connect does)
        theirs = [c for c in message.proxy_authorizations if c.realm != "sip.local"]
        message.remove("Proxy-Authorization")
        for credentials in theirs:
            message.add("Proxy-Authorization", str(credentials))
        return MessageResponse(message, destination=CALLEE, follow_dialog=True)
    message.pop_first_value("Route")
    return MessageResponse(message, destination=CALLEE)


def in_dialog(method: str, branch: str, route: str = OUR_ROUTE, extra: str = "") -> bytes:
    data = request_bytes(
        method,
        CALLER.port,
        branch=branch,
        call_id="followed",
        uri="sip:1002@127.0.0.1:7002",
        extra=f"Route: {route}\r\n{extra}",
    )
    return data.replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=downstream")


def credentials(realm: str) -> str:
    return (
        f'Proxy-Authorization: Digest username="1001", realm="{realm}", nonce="n1", '
        'uri="sip:1002@sip.local", response="0123456789abcdef0123456789abcdef"\r\n'
    )


def answered_call(untouched: Callable[[str], str | None] | None, extra: str = "") -> Wire:
    """A call answered, its INVITE sent with ``extra`` headers (credentials)."""
    wire = Wire(answer=record_routing)
    wire.core.untouched_route = untouched
    data = invite(call_id="followed")
    wire.feed(data.replace(b"\r\n\r\n", f"\r\n{extra}\r\n".encode(), 1))
    wire.feed(reply_to(sent_to_callee(wire), 200), CALLEE)
    wire.take()
    return wire


def test_a_dialog_the_processor_lets_us_follow_is_routed_here_until_its_bye_is_answered() -> None:
    wire = answered_call(lambda method: "connect")
    assert wire.core.dialogs_followed == 1 and len(wire.processed) == 1
    wire.feed(in_dialog("ACK", "z9hG4bKack"))
    wire.feed(in_dialog("BYE", "z9hG4bKbye"))
    sent = wire.take()
    assert [t.destination for t in sent] == [CALLEE, CALLEE]
    ack, bye = (parse(t.data) for t in sent)
    assert isinstance(ack, Request) and isinstance(bye, Request)
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert len(wire.processed) == 1  # neither went to the processor
    # our Route taken off, a hop spent, and sent where the INVITE found the callee
    assert "Route" not in bye and bye.max_forwards == 69
    assert str(bye.uri) == "sip:1002@127.0.0.1:7002"
    assert wire.core.stats["dialog_followed"] == 2
    wire.feed(make_response(bye, 200).serialize(), CALLEE)
    assert statuses(wire.messages(CALLER)) == [200]
    assert wire.core.dialogs_followed == 0
    # the dialog has ended here: a request in it goes to the processor
    wire.feed(in_dialog("BYE", "z9hG4bKbye2"))
    assert len(wire.processed) == 2


def test_credentials_the_processor_took_out_of_the_invite_are_taken_out_as_it_would() -> None:
    """baresip sends its INVITE's Proxy-Authorization again in the ACK and the BYE (RFC 3261
    section 22.3 lets a UAC reuse a realm's credentials). Those of a realm the processor
    took out of the INVITE are taken out here too, and the request is followed; the
    credentials of any other realm send it to the processor, which knows its realms."""
    both = credentials("sip.local") + credentials("upstream.example")
    wire = answered_call(lambda method: "connect", extra=both)
    (dialog,) = wire.core._dialogs.values()
    assert dialog.realms_out() == frozenset({"sip.local"})
    wire.feed(in_dialog("ACK", "z9hG4bKack", extra=credentials("sip.local")))
    wire.feed(in_dialog("INFO", "z9hG4bKinfo", extra=credentials("upstream.example")))
    wire.feed(in_dialog("BYE", "z9hG4bKbye", extra=credentials("sip.local")))
    assert [r.method for r in wire.processed] == ["INVITE", "INFO"]
    sent = [m for t in wire.take() if isinstance(m := parse(t.data), Request)]
    assert [m.method for m in sent] == ["ACK", "INFO", "BYE"]  # INFO by the processor
    assert "Proxy-Authorization" not in sent[0] and "Proxy-Authorization" not in sent[2]
    assert wire.core.stats["dialog_followed"] == 2
    # our realm's credentials with another secret, before or after them: to the processor
    wire = answered_call(lambda method: "connect", extra=credentials("sip.local"))
    for branch, extra in (
        ("z9hG4bKi1", credentials("sip.local") + "Authorization: Digest username=x\r\n"),
        ("z9hG4bKi2", "X-Connect-Token: eyJ\r\n" + credentials("sip.local")),
        ("z9hG4bKi3", "authorization: Digest username=x\r\n"),
    ):
        wire.feed(in_dialog("INFO", branch, extra=extra))
    assert [r.method for r in wire.processed] == ["INVITE", "INFO", "INFO", "INFO"]
    wire.feed(in_dialog("INFO", "z9hG4bKi4", extra=credentials("sip.local")))
    assert len(wire.processed) == 4 and wire.core.stats["dialog_followed"] == 1
    # an INVITE without credentials: any in the dialog send the request to the processor
    wire = answered_call(lambda method: "connect")
    wire.feed(in_dialog("BYE", "z9hG4bKbye", extra=credentials("sip.local")))
    assert [r.method for r in wire.processed] == ["INVITE", "BYE"]


def test_a_banned_source_s_dialog_requests_go_to_the_processor() -> None:
    """A source the processor has banned since the call began gets its answer (403) there:
    the guard's ban holds in the dialogs followed here too."""
    bans: set[str] = set()
    wire = answered_call(lambda method: "connect")
    wire.core.banned = bans.__contains__
    wire.feed(in_dialog("INFO", "z9hG4bKi1"))
    assert len(wire.processed) == 1  # followed
    bans.add(CALLER.host)
    wire.feed(in_dialog("BYE", "z9hG4bKbye"))
    assert [r.method for r in wire.processed] == ["INVITE", "BYE"]


def test_a_dialog_request_goes_to_the_processor_unless_all_is_as_it_let_us() -> None:
    edited = OUR_ROUTE.replace("127.0.0.1~7002", "192.0.2.66~5060")  # a flow made up
    wire = answered_call(lambda method: "connect")
    for number, data in enumerate(
        (
            in_dialog("INFO", "z9hG4bKi1", route=edited),
            in_dialog("INFO", "z9hG4bKi2", extra="Proxy-Authorization: Digest username=x\r\n"),
            in_dialog("INFO", "z9hG4bKi3", extra="X-Connect-Token: eyJ\r\n"),
            in_dialog("INFO", "z9hG4bKi4").replace(b"tag=downstream", b"tag=another"),
        ),
        start=2,
    ):
        wire.feed(data)
        assert len(wire.processed) == number
    # a middleware now reads BYE (its route is no longer the processor's alone)
    wire = answered_call(lambda method: None if method == "BYE" else "connect")
    wire.feed(in_dialog("BYE", "z9hG4bKbye"))
    assert [r.method for r in wire.processed] == ["INVITE", "BYE"]
    # a processor that did not let us, or an EdgePort whose processor cannot say
    wire = Wire(answer=to(CALLEE))
    wire.core.untouched_route = lambda method: "connect"
    wire.feed(invite(call_id="followed"))
    wire.feed(reply_to(sent_to_callee(wire), 200), CALLEE)
    wire.feed(in_dialog("BYE", "z9hG4bKbye"))
    assert len(wire.processed) == 2 and wire.core.dialogs_followed == 0
    wire = answered_call(None)
    wire.feed(in_dialog("BYE", "z9hG4bKbye"))
    assert len(wire.processed) == 2 and wire.core.dialogs_followed == 0


def test_a_stamped_via_keeps_its_text_and_gains_rport_and_received() -> None:
    """RFC 3581 section 4 and RFC 3261 section 18.2.1, in each shape a client writes: rport
    asked for last, the value as written gains both at its end; rport asked for before
    another parameter, it is filled in where it stands; a sent-by other than the source
    gets received alone; a second Via on the same line is left as it was."""
    wire = Wire(lambda r: MessageResponse(make_response(r.message, 200, to_tag="t")))  # type: ignore[arg-type]
    source = f"127.0.0.1:{CALLER.port}"
    shapes = {
        f"SIP/2.0/udp {source} ;branch=z9hG4bKs1;rport": f"SIP/2.0/udp {source} ;branch=z9hG4bKs1;rport={CALLER.port};received=127.0.0.1",
        f"SIP/2.0/UDP {source};rport;branch=z9hG4bKs2": f"SIP/2.0/UDP {source};rport={CALLER.port};branch=z9hG4bKs2;received=127.0.0.1",
        "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKs3": "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKs3;received=127.0.0.1",
        f"SIP/2.0/UDP {source};branch=z9hG4bKs4;rport , SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKx": f"SIP/2.0/UDP {source};branch=z9hG4bKs4;rport={CALLER.port};received=127.0.0.1, SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKx",
    }
    for via, stamped in shapes.items():
        options = request_bytes("OPTIONS", CALLER.port, uri="sip:sip.local").replace(
            f"Via: SIP/2.0/UDP {source};branch=z9hG4bKt1;rport".encode(), f"Via: {via}".encode()
        )
        wire.feed(options)
        given = wire.processed[-1].message
        assert given.get("Via") == stamped
        assert parse(given.serialize()).top_via == given.top_via  # the text says what it holds
        assert given.serialize() == options.replace(via.encode(), stamped.encode())
        (answer,) = wire.messages()
        assert isinstance(answer, Response) and answer.get("Via") == stamped
