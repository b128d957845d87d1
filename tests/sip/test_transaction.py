"""The RFC 3261 section 17 machines, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from sipgrid.sip import LocalProtocolError, Request, Response, make_response, parse
from sipgrid.sip.builders import build_cancel
from sipgrid.sip.transaction import (
    T1,
    T2,
    T4,
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
    Timer,
    TransportFailed,
    client_key,
    server_key,
)

from .helpers import INVITE, msg, request, torture

OPTIONS = msg(
    "OPTIONS sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKopt1",
    "Max-Forwards: 70",
    "To: <sip:bob@biloxi.example.com>",
    "From: <sip:alice@atlanta.example.com>;tag=88",
    "Call-ID: opt@pc33",
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
)


def run_until(
    tx: ClientInviteTransaction
    | ClientNonInviteTransaction
    | ServerInviteTransaction
    | ServerNonInviteTransaction,
    end: float,
) -> list[tuple[float, Effect]]:
    """Fire every timer up to ``end`` and return (time, effect) pairs."""
    out: list[tuple[float, Effect]] = []
    while (deadline := tx.next_deadline()) is not None and deadline <= end:
        out += [(deadline, e) for e in tx.handle_timer(deadline)]
    return out


def sends(effects: list[tuple[float, Effect]]) -> list[float]:
    return [round(t, 3) for t, e in effects if isinstance(e, Send)]


def reply(req: Request, status: int, tag: str | None = "xyz") -> Response:
    return make_response(req, status, to_tag=tag)


class TestClientInvite:
    def test_timer_a_doubles_and_timer_b_times_out(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=False)
        assert tx.start(0.0) == [Send(tx.request)]
        effects = run_until(tx, 100.0)
        # retransmits at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; B fires at 64*T1 = 32
        assert sends(effects) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        assert effects[-2:] == [(32.0, Timeout(Timer.B)), (32.0, Terminated())]
        assert (tx.state, tx.next_deadline()) == (State.TERMINATED, None)

    def test_reliable_transport_has_no_timer_a(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=True)
        tx.start(0.0)
        assert sends(run_until(tx, 100.0)) == []
        assert tx.state is State.TERMINATED

    def test_provisional_stops_retransmissions_then_2xx_terminates(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=False)
        tx.start(0.0)
        ringing = reply(tx.request, 180)
        assert tx.receive_response(ringing, 0.2) == [Deliver(ringing)]
        assert tx.state is State.PROCEEDING and run_until(tx, 100.0) == []
        ok = reply(tx.request, 200)
        assert tx.receive_response(ok, 5.0) == [Deliver(ok), Terminated()]

    def test_non_2xx_is_acked_and_retransmissions_reacked_until_timer_d(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=False)
        tx.start(0.0)
        busy = reply(tx.request, 486)
        effects = tx.receive_response(busy, 1.0)
        assert isinstance(effects[0], Send) and effects[1] == Deliver(busy)
        ack = effects[0].message
        assert isinstance(ack, Request) and ack.method == "ACK"
        assert ack.to.tag == "xyz" and ack.cseq.seq == 314159 and ack.cseq.method == "ACK"
        assert ack.top_via.branch == tx.request.top_via.branch and ack.uri == tx.request.uri
        assert tx.state is State.COMPLETED
        assert tx.receive_response(busy, 2.0) == [Send(ack)]  # absorbed, re-ACKed
        assert run_until(tx, 100.0) == [(33.0, Terminated())]  # Timer D = 32 s

    def test_non_2xx_over_tcp_terminates_at_once(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=True)
        tx.start(0.0)
        effects = tx.receive_response(reply(tx.request, 603), 1.0)
        assert isinstance(effects[-1], Terminated) and tx.state is State.TERMINATED

    def test_transport_error(self) -> None:
        tx = ClientInviteTransaction(request(), reliable=True)
        tx.start(0.0)
        assert tx.transport_error() == [TransportFailed(), Terminated()]


class TestClientNonInvite:
    def test_timer_e_caps_at_t2_and_timer_f(self) -> None:
        tx = ClientNonInviteTransaction(request(OPTIONS), reliable=False)
        tx.start(0.0)
        effects = run_until(tx, 100.0)
        # 0.5, 1.5, 3.5, 7.5, then every T2=4 s until F at 32 s
        assert sends(effects) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        assert effects[-2:] == [(32.0, Timeout(Timer.F)), (32.0, Terminated())]

    def test_proceeding_retransmits_every_t2(self) -> None:
        tx = ClientNonInviteTransaction(request(OPTIONS), reliable=False)
        tx.start(0.0)
        tx.receive_response(reply(tx.request, 100, None), 0.1)
        effects = run_until(tx, 10.0)
        assert sends(effects) == [0.5, 4.5, 8.5]

    def test_final_response_then_timer_k(self) -> None:
        tx = ClientNonInviteTransaction(request(OPTIONS), reliable=False)
        tx.start(0.0)
        ok = reply(tx.request, 200)
        assert tx.receive_response(ok, 0.7) == [Deliver(ok)]
        assert tx.receive_response(ok, 0.8) == []  # retransmission absorbed
        assert run_until(tx, 100.0) == [(0.7 + T4, Terminated())]

    def test_invite_is_refused(self) -> None:
        with pytest.raises(LocalProtocolError):
            ClientNonInviteTransaction(request(), reliable=False).start(0.0)


class TestServerInvite:
    def test_trying_at_once_and_retransmitted_invite_gets_last_response(self) -> None:
        tx = ServerInviteTransaction(request(), reliable=False)
        effects = tx.start(0.0)
        assert isinstance(effects[0], Send) and effects[0].message.status == 100  # type: ignore[union-attr]
        assert effects[1] == Deliver(tx.request)
        assert tx.receive_request(tx.request, 0.3) == [effects[0]]
        ringing = reply(tx.request, 180)
        tx.send_response(ringing, 0.5)
        assert tx.receive_request(tx.request, 0.6) == [Send(ringing)]

    def test_timer_g_and_h_without_ack(self) -> None:
        tx = ServerInviteTransaction(request(), reliable=False)
        tx.start(0.0)
        busy = reply(tx.request, 486)
        assert tx.send_response(busy, 1.0) == [Send(busy)]
        effects = run_until(tx, 100.0)
        assert sends(effects) == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
        assert effects[-2:] == [(33.0, Timeout(Timer.H)), (33.0, Terminated())]

    def test_ack_confirms_then_timer_i(self) -> None:
        tx = ServerInviteTransaction(request(), reliable=False)
        tx.start(0.0)
        busy = reply(tx.request, 486)
        tx.send_response(busy, 1.0)
        ack = parse(
            INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"314159 INVITE", b"314159 ACK")
        )
        assert isinstance(ack, Request)
        assert server_key(ack) == server_key(tx.request)
        assert tx.receive_request(ack, 1.2) == []
        assert tx.state is State.CONFIRMED
        assert tx.receive_request(ack, 1.3) == []  # absorbed
        assert run_until(tx, 100.0) == [(1.2 + T4, Terminated())]

    def test_2xx_terminates(self) -> None:
        tx = ServerInviteTransaction(request(), reliable=True)
        tx.start(0.0, send_trying=False)
        ok = reply(tx.request, 200)
        assert tx.send_response(ok, 0.1) == [Send(ok), Terminated()]
        with pytest.raises(LocalProtocolError):
            tx.send_response(ok, 0.2)

    def test_reliable_ack_terminates_at_once(self) -> None:
        tx = ServerInviteTransaction(request(), reliable=True)
        tx.start(0.0)
        tx.send_response(reply(tx.request, 404), 0.1)
        assert run_until(tx, 1.0) == []  # no timer G over TCP
        ack = parse(
            INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"314159 INVITE", b"314159 ACK")
        )
        assert isinstance(ack, Request)
        assert tx.receive_request(ack, 0.2) == [Terminated()]


class TestServerNonInvite:
    def test_retransmissions_get_the_last_response_until_timer_j(self) -> None:
        tx = ServerNonInviteTransaction(request(OPTIONS), reliable=False)
        assert tx.start(0.0) == [Deliver(tx.request)]
        assert tx.receive_request(tx.request, 0.1) == []  # Trying: absorbed
        trying = reply(tx.request, 100, None)
        tx.send_response(trying, 0.2)
        assert tx.receive_request(tx.request, 0.3) == [Send(trying)]
        ok = reply(tx.request, 200)
        tx.send_response(ok, 0.4)
        assert tx.receive_request(tx.request, 0.5) == [Send(ok)]
        assert run_until(tx, 100.0) == [(0.4 + 64 * T1, Terminated())]

    def test_a_final_answer_not_kept_ends_it_at_once(self) -> None:
        """A stateless UAS's answer (RFC 3261 section 8.2.7): sent once, no Timer J, and
        nothing kept to answer a retransmission with; a provisional answer still keeps it."""
        tx = ServerNonInviteTransaction(request(OPTIONS), reliable=False)
        tx.start(0.0)
        trying = reply(tx.request, 100, None)
        assert tx.send_response(trying, 0.1, keep=False) == [Send(trying)]
        assert tx.state is State.PROCEEDING
        challenge = reply(tx.request, 401)
        assert tx.send_response(challenge, 0.2, keep=False) == [Send(challenge), Terminated()]
        assert (tx.state, tx.next_deadline()) == (State.TERMINATED, None)
        assert run_until(tx, 100.0) == []

    def test_packed_it_answers_as_before_and_reads_its_messages_back(self) -> None:
        """Packed (bytes alone, while it waits for Timer J), a transaction still matches
        and answers retransmissions with the same bytes, and gives its messages back as
        they were; it can be packed again after, and a 2543 peer's To tag still counts."""
        original = request(OPTIONS)
        original.set("Max-Forwards", 69)  # changed since parsed: serialized to pack it
        tx = ServerNonInviteTransaction(original, reliable=False)
        tx.start(0.0)
        ok = reply(tx.request, 200)
        assert tx.send_response(ok, 0.1)[0] == Send(ok)
        tx.pack()
        assert tx._request is None and tx._last_response is None
        assert tx.request == original and tx.last_response == ok
        tx.pack(ok.serialize())
        assert tx._response_bytes == ok.serialize() and tx._request_bytes
        retransmission = request(OPTIONS)
        assert tx.matches(retransmission)
        (again,) = tx.receive_request(retransmission, 1.0)
        assert isinstance(again, Send) and again.message.serialize() == ok.serialize()
        tx.pack()
        assert run_until(tx, 100.0) == [(0.1 + 64 * T1, Terminated())]

        rfc2543 = OPTIONS.replace(b";branch=z9hG4bKopt1", b"")  # no magic cookie
        old_style = ServerNonInviteTransaction(request(rfc2543), reliable=False)
        old_style.start(0.0)
        old_style.send_response(make_response(old_style.request, 404, to_tag="t1"), 0.1)
        old_style.pack()
        assert old_style.matches(request(rfc2543))
        assert not old_style.matches(
            request(rfc2543.replace(b"bob@biloxi.example.com>", b"bob@biloxi.example.com>;tag=zz"))
        )

    def test_reliable_final_terminates_at_once(self) -> None:
        tx = ServerNonInviteTransaction(request(OPTIONS), reliable=True)
        tx.start(0.0)
        ok = reply(tx.request, 200)
        assert tx.send_response(ok, 0.1) == [Send(ok), Terminated()]


class TestMatching:
    """RFC 3261 sections 17.1.3 and 17.2.3."""

    def test_server_key_uses_branch_sent_by_and_method(self) -> None:
        invite = request()
        key = server_key(invite)
        assert key == ("z9hG4bK776asdhds", ("pc33.atlanta.example.com", 5060), "INVITE")
        # the same branch from another sent-by is another transaction
        other = request(
            INVITE.replace(b"pc33.atlanta.example.com;branch", b"pc34.atlanta.example.com;branch")
        )
        assert server_key(other) != key
        # the port defaults by transport: 5060 written out is the same sent-by
        explicit = request(
            INVITE.replace(
                b"pc33.atlanta.example.com;branch", b"pc33.atlanta.example.com:5060;branch"
            )
        )
        assert server_key(explicit) == key

    def test_cancel_has_its_own_transaction_and_finds_its_invite(self) -> None:
        invite = request()
        cancel = build_cancel(invite)
        cancel = request(cancel.serialize())
        assert server_key(cancel) != server_key(invite)
        assert server_key(cancel, method="INVITE") == server_key(invite)
        assert cancel.cseq.method == "CANCEL" and cancel.cseq.seq == invite.cseq.seq

    def test_rfc2543_fallback_matches_on_dialog_fields_and_to_tag(self) -> None:
        invite = request(torture("inv2543"))
        tx = ServerInviteTransaction(invite, reliable=False)
        tx.start(0.0)
        tx.send_response(make_response(invite, 404, to_tag="t1"), 0.1)
        ack_bytes = torture("inv2543").split(b"\r\n\r\n")[0]
        ack_bytes = ack_bytes.replace(b"INVITE sip", b"ACK sip").replace(b"56 INVITE", b"56 ACK")
        ack_bytes = ack_bytes.replace(
            b"To: sip:+16505552222@ss1.example.net;user=phone",
            b"To: sip:+16505552222@ss1.example.net;user=phone;tag=t1",
        )
        ack = request(ack_bytes + b"\r\n\r\n")
        assert server_key(ack) == server_key(invite)
        assert tx.matches(ack)
        wrong = request(ack_bytes.replace(b"tag=t1", b"tag=t2") + b"\r\n\r\n")
        assert server_key(wrong) == server_key(invite) and not tx.matches(wrong)
        retransmit = request(torture("inv2543"))
        assert tx.matches(retransmit)

    def test_badbranch_is_treated_as_rfc3261(self) -> None:
        m = request(torture("badbranch"))
        assert m.top_via.has_magic_cookie and server_key(m)[0] == "z9hG4bK"

    def test_client_key_uses_branch_and_cseq_method(self) -> None:
        invite = request()
        ok = make_response(invite, 200, to_tag="a")
        assert client_key(ok) == client_key(invite) == ("z9hG4bK776asdhds", "INVITE")
        cancel_ok = make_response(request(build_cancel(invite).serialize()), 200)
        assert client_key(cancel_ok) == ("z9hG4bK776asdhds", "CANCEL")


def test_timer_constants() -> None:
    assert (T1, T2, T4) == (0.5, 4.0, 5.0)
