from __future__ import annotations

import pytest

from sipgrid.sip import KeepAlivePing, ParseError, Request, StreamFramer

from .helpers import INVITE, msg

OPTIONS = msg(
    "OPTIONS sip:sip.local SIP/2.0",
    "Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKo1",
    "To: <sip:sip.local>",
    "From: <sip:1001@sip.local>;tag=1",
    "Call-ID: o1",
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
)


def drain(framer: StreamFramer) -> list[object]:
    out: list[object] = []
    while (event := framer.next_event()) is not None:
        out.append(event)
    return out


def test_several_messages_in_one_read() -> None:
    framer = StreamFramer()
    framer.feed(INVITE + OPTIONS + INVITE)
    events = drain(framer)
    assert [e.method for e in events] == ["INVITE", "OPTIONS", "INVITE"]  # type: ignore[attr-defined]
    assert events[0].body == b"v=0\n"  # type: ignore[attr-defined]
    assert framer.buffered == 0


def test_one_message_across_reads_byte_by_byte() -> None:
    framer = StreamFramer()
    events: list[object] = []
    for i in range(len(INVITE)):
        framer.feed(INVITE[i : i + 1])
        events += drain(framer)
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].serialize() == INVITE


def test_keepalive_ping_and_pong() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n" + OPTIONS + b"\r\n")
    events = drain(framer)
    assert isinstance(events[0], KeepAlivePing) and isinstance(events[1], Request)
    assert framer.buffered == 2  # a lone CRLF may still become a ping
    framer.feed(b"\r\n")
    assert isinstance(framer.next_event(), KeepAlivePing)
    framer.feed(b"\r\n" + OPTIONS)  # a pong before a message is skipped
    assert isinstance(framer.next_event(), Request)


def test_content_length_is_required_on_streams() -> None:
    framer = StreamFramer()
    framer.feed(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(ParseError) as info:
        framer.next_event()
    assert info.value.header == "Content-Length"


def test_compact_content_length() -> None:
    framer = StreamFramer()
    framer.feed(INVITE.replace(b"Content-Length: 4", b"l: 4") + OPTIONS)
    assert len(drain(framer)) == 2


def test_oversized_messages_get_513() -> None:
    framer = StreamFramer(max_message_size=200)
    framer.feed(b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * 300)
    with pytest.raises(ParseError) as info:
        framer.next_event()
    assert info.value.status == 513
    big_body = StreamFramer(max_message_size=400)
    big_body.feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 9000"))
    with pytest.raises(ParseError) as info:
        big_body.next_event()
    assert info.value.status == 513
