"""Parsing, typed header access and byte-exact serialization."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sipgrid.sip import (
    NameAddr,
    ParseError,
    Request,
    SipUri,
    TelUri,
    Via,
    headers,
    make_response,
    parse,
    parse_uri,
)
from sipgrid.sip.headers import CSeq, format_header_params, split_commas
from sipgrid.sip.uri import MEMO_SIZE

from .helpers import INVITE, msg, request, response


def test_typical_invite() -> None:
    m = request()
    assert m.method == "INVITE" and isinstance(m.uri, SipUri)
    assert (m.uri.user, m.uri.host, m.uri.port) == ("bob", "biloxi.example.com", None)
    assert m.top_via.branch == "z9hG4bK776asdhds" and m.top_via.sent_by == (
        "pc33.atlanta.example.com",
        5060,
    )
    assert m.from_.tag == "1928301774" and m.from_.display_name == "Alice" and m.to.tag is None
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (m.cseq.seq, m.cseq.method) == (314159, "INVITE")
    assert m.max_forwards == 70 and m.content_length == 4 and m.content_type == "application/sdp"
    assert m.body == b"v=0\n" and m.serialize() == INVITE


def test_compact_forms_and_case_insensitive_names() -> None:
    data = msg(
        "REGISTER sip:sip.local SIP/2.0",
        "v: SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bKc",
        "f: <sip:1001@sip.local>;tag=a",
        "t: <sip:1001@sip.local>",
        "i: compact@10.0.0.1",
        "CSEQ: 2 REGISTER",
        "m: <sip:1001@10.0.0.1:5062>;expires=60, <sip:1001@10.0.0.2>;q=0.5",
        "k: path, outbound",
        "x: 1800",
        "o: presence",
        "u: presence, dialog",
        "r: <sip:x@y>",
        "b: <sip:z@y>",
        "e: gzip",
        "c: text/plain",
        "s: hello",
        "y: abc",
        "l: 0",
    )
    m = request(data)
    assert m.top_via.wants_rport and m.top_via.rport is None and m.top_via.port == 5062
    assert m.call_id == "compact@10.0.0.1"
    assert [c.expires for c in m.contacts] == [60, None] and m.contacts[1].q == 0.5
    assert m.tokens("Supported") == ("path", "outbound")
    for long_name, value in [
        ("Session-Expires", "1800"), ("Event", "presence"), ("Allow-Events", "presence, dialog"),
        ("Refer-To", "<sip:x@y>"), ("Referred-By", "<sip:z@y>"), ("Content-Encoding", "gzip"),
        ("Subject", "hello"), ("Identity", "abc"), ("content-type", "text/plain"),
    ]:  # fmt: skip
        assert m.get(long_name) == value
    assert m.serialize() == data


def test_multi_value_headers_split_on_commas_outside_quotes_and_brackets() -> None:
    assert split_commas('"a, b" <sip:x@y>;p="1,2", <sip:z@w>') == [
        '"a, b" <sip:x@y>;p="1,2"',
        " <sip:z@w>",
    ]
    m = request(
        INVITE.replace(
            b"Max-Forwards",
            b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nRoute: <sip:p3;lr>\r\nMax-Forwards",
        )
    )
    assert [r.sip_uri.host for r in m.routes if r.sip_uri] == [
        "p1.example.com",
        "p2.example.com",
        "p3",
    ]


def test_ipv6_references() -> None:
    m = request(
        INVITE.replace(b"pc33.atlanta.example.com;branch", b"[2001:db8::9:1]:5070;branch").replace(
            b"sip:bob@biloxi.example.com SIP", b"sip:bob@[2001:db8::1]:5061;transport=tls SIP"
        )
    )
    assert m.top_via.host == "[2001:db8::9:1]" and m.top_via.port == 5070
    assert isinstance(m.uri, SipUri) and m.uri.host == "[2001:db8::1]" and m.uri.port == 5061
    assert m.uri.transport == "tls"
    assert str(m.uri) == "sip:bob@[2001:db8::1]:5061;transport=tls"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:alice:secretword@atlanta.com;transport=tcp",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice@192.0.2.4:5061",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:[::1]",
        "sip:p1.example.com;lr;maddr=10.0.0.1;ttl=5",
    ],
)
def test_uri_round_trip(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri) and str(uri) == text


def test_uri_accessors_and_tel() -> None:
    uri = parse_uri("sip:p1.example.com:5080;LR;maddr=10.0.0.1;ttl=5;user=phone;method=INVITE")
    assert isinstance(uri, SipUri)
    assert (
        uri.lr
        and uri.maddr == "10.0.0.1"
        and uri.ttl == 5
        and uri.user_param == "phone"
        and uri.method == "INVITE"
    )
    assert uri.host_port == "p1.example.com:5080" and uri.aor == "sip:p1.example.com"
    assert (
        str(uri.with_params(lr=None, transport="tcp"))
        == "sip:p1.example.com:5080;maddr=10.0.0.1;ttl=5;user=phone;method=INVITE;transport=tcp"
    )
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (
        isinstance(tel, TelUri)
        and tel.number == "+1-201-555-0123"
        and tel.param("phone-context") == "example.com"
    )
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("sip:", "malformed URI"),
        ("sip:alice@", "malformed host"),
        ("sip:alice@host:99999", "malformed port"),
        ("sip:alice@host:5x", "malformed port"),
        ("sip:alice@host:\u0665", "malformed port"),  # port = 1*DIGIT, and DIGIT is ASCII
        ("sip:al ice@host", "malformed user"),
        ("sip:[::1", "IPv6"),
        ("sip:host;=x", "parameter"),
    ],
)
def test_bad_uris_name_the_fault(text: str, fault: str) -> None:
    with pytest.raises(ParseError, match=fault):
        parse_uri(text, what="Contact")


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"A \\"quoted\\" name" <sip:a@b>;tag=1;x="y z"')
    assert a.display_name == 'A "quoted" name' and a.tag == "1" and a.param("x") == "y z"
    assert NameAddr.parse(str(a)) == a
    b = NameAddr.parse("sip:a@b;tag=2")
    assert b.tag == "2" and isinstance(b.uri, SipUri) and b.uri.params == ()
    c = NameAddr.parse("Bob Smith <sip:bob@b;transport=tcp>;expires=30")
    assert (
        c.display_name == "Bob Smith"
        and c.expires == 30
        and isinstance(c.uri, SipUri)
        and c.uri.transport == "tcp"
    )
    assert NameAddr.parse("*").wildcard
    assert str(b.with_param("tag", None)) == "<sip:a@b>"


def test_via_received_rport_and_round_trip() -> None:
    v = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport;maddr=224.0.0.1;ttl=16")
    assert v.wants_rport and v.maddr == "224.0.0.1" and v.ttl == 16
    v2 = v.with_param("received", "198.51.100.7").with_param("rport", "40000")
    assert (
        str(v2)
        == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport=40000;maddr=224.0.0.1;ttl=16;received=198.51.100.7"
    )
    assert Via.parse(str(v2)) == v2 and v2.rport == 40000 and v2.received == "198.51.100.7"
    with pytest.raises(ParseError, match="Via"):
        Via.parse("SIP/3.0/UDP host")


def test_a_copy_with_a_parameter_keeps_every_other_field() -> None:
    # with_param and with_params name each field by hand (dataclasses.replace is slow): a
    # field added later must be added there too, and to the values here
    values: list[tuple[Any, dict[str, Any]]] = [
        (
            Via,
            {
                "transport": "TLS",
                "host": "h",
                "port": 5,
                "params": (("a", "1"),),
                "protocol": "P/2",
            },
        ),
        (
            NameAddr,
            {
                "uri": parse_uri("sip:u@h"),
                "display_name": "D",
                "params": (("a", None),),
                "wildcard": True,
            },
        ),
        (
            SipUri,
            {
                "scheme": "sips",
                "host": "h",
                "user": "u",
                "password": "p",
                "port": 7,
                "params": (("a", "1"),),
                "headers": "x=y",
            },
        ),
    ]
    for cls, given in values:
        assert {f.name for f in dataclasses.fields(cls) if f.init} == set(given), cls
        value = cls(**given)
        changed = value.with_params(b="2") if cls is SipUri else value.with_param("b", "2")
        assert changed.params == (*given["params"], ("b", "2"))
        assert dataclasses.replace(value, params=changed.params) == changed


def test_missing_headers_and_bad_values_say_which() -> None:
    for header, bad in [
        ("Call-ID", b"Call-ID: \r\n"),
        ("Max-Forwards", b"Max-Forwards: seventy\r\n"),
        ("CSeq", b"CSeq: x INVITE\r\n"),
    ]:
        lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(header.encode())]
        data = b"\r\n".join(lines).replace(b"\r\n\r\n", b"\r\n" + bad + b"\r\n", 1)
        with pytest.raises(ParseError) as info:
            parse(data)
        assert info.value.header == header and info.value.status == 400
    with pytest.raises(ParseError, match="missing Via"):
        parse(b"\r\n".join(line for line in INVITE.split(b"\r\n") if not line.startswith(b"Via")))


@pytest.mark.parametrize("header", ["Call-ID", "From", "To", "CSeq"])
def test_a_request_without_a_required_header_is_refused_by_name(header: str) -> None:
    data = b"\r\n".join(
        line for line in INVITE.split(b"\r\n") if not line.startswith(header.encode() + b":")
    )
    assert data != INVITE
    with pytest.raises(ParseError) as info:
        parse(data)
    assert info.value.header == header and info.value.status == 400
    assert info.value.reason == f"missing {header} header"


def test_framing_errors() -> None:
    with pytest.raises(ParseError, match="empty line"):
        parse(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n")
    with pytest.raises(ParseError, match="without a name"):
        parse(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards 70"))
    with pytest.raises(ParseError, match="continuation"):
        parse(b"INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n")
    with pytest.raises(ParseError, match="Status-Line"):
        parse(b"SIP/2.0\r\n\r\n")


# Status-Code = 3DIGIT, SIP-Version's numbers 1*DIGIT and a Via's port 1*DIGIT, where DIGIT
# is ASCII (RFC 3261 section 25.1, RFC 2234's core rules): re's \d took any script's digits,
# so that a status of "1\u0660\u0660" read as 100
@pytest.mark.parametrize(
    ("start", "via", "error"),
    [
        ("SIP/2.0 1\u0660\u0660 Trying", "SIP/2.0/UDP h", "malformed status code"),
        ("SIP/\u0662.\u0660 200 OK", "SIP/2.0/UDP h", "malformed SIP-Version"),
        ("OPTIONS sip:a@b SIP/\u0662.0", "SIP/2.0/UDP h", "malformed SIP-Version"),
        ("OPTIONS sip:a@b SIP/2.0", "SIP/2.0/UDP h:\u0665\u0660\u0666\u0660", "Via: malformed"),
        ("OPTIONS sip:a@b SIP/2.0", "SIP/2.0/UDP h : \u0665 ;rport", "Via: malformed"),
    ],
)
def test_digits_are_ascii_digits(start: str, via: str, error: str) -> None:
    data = (
        f"{start}\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
        "Call-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
    ).encode()
    with pytest.raises(ParseError, match=error):
        parse(data)


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse(data).body == b"v=0\n"


def test_changes_keep_other_lines_byte_exact() -> None:
    data = INVITE.replace(
        b"Max-Forwards: 70", b"Max-Forwards: 70\r\nX-Odd  :   spaced   value\r\n  folded"
    )
    m = request(data)
    assert m.get("X-Odd") == "spaced   value folded"
    via = m.top_via.with_param("received", "192.0.2.1")
    m.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1", first=True)
    m.set("Max-Forwards", 69)
    assert m.max_forwards == 69 and m.top_via.host == "proxy.example.com"
    out = m.serialize()
    assert b"X-Odd  :   spaced   value\r\n  folded\r\n" in out
    assert out.startswith(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1\r\nVia: SIP/2.0/UDP pc33"
    )
    assert parse(out) == m
    assert m.pop_first_value("Via") == "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1"
    m.set("Via", str(via))
    assert m.top_via.received == "192.0.2.1"


def test_pop_first_value_of_a_comma_list() -> None:
    m = request(INVITE.replace(b"Max-Forwards", b"Route: <sip:a;lr>, <sip:b;lr>\r\nMax-Forwards"))
    assert m.pop_first_value("Route") == "<sip:a;lr>"
    assert [str(r) for r in m.routes] == ["<sip:b;lr>"]
    assert m.pop_first_value("Route") == "<sip:b;lr>" and "Route" not in m


def test_make_response_copies_headers_and_adds_to_tag() -> None:
    req = request()
    res = make_response(req, 486, to_tag="abc", headers=[("Retry-After", 30)])
    assert res.status == 486 and res.reason == "Busy Here"
    assert res.to.tag == "abc" and res.from_.tag == "1928301774" and res.call_id == req.call_id
    assert res.get("Retry-After") == "30" and res.content_length == 0
    again = response(res.serialize())
    assert again == res
    assert make_response(req, 100, to_tag="abc").to.tag is None


def test_make_response_puts_the_copied_headers_in_order() -> None:
    """Via (every one, in order), From, To, Call-ID, CSeq, however the request ordered them
    (RFC 3261 section 8.2.6.2)."""
    req = request(
        b"OPTIONS sip:b@example.com SIP/2.0\r\nCall-ID: x1\r\nTo: <sip:b@example.com>\r\n"
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nCSeq: 7 OPTIONS\r\n"
        b"From: <sip:a@example.com>;tag=f\r\nVia: SIP/2.0/UDP p.example.com;branch=z9hG4bK2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    res = make_response(req, 200, to_tag="t")
    assert [(f.key, f.value) for f in res.fields][:6] == [
        ("via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"),
        ("via", "SIP/2.0/UDP p.example.com;branch=z9hG4bK2"),
        ("from", "<sip:a@example.com>;tag=f"),
        ("to", "<sip:b@example.com>;tag=t"),
        ("call-id", "x1"),
        ("cseq", "7 OPTIONS"),
    ]


def test_make_response_spells_extra_headers_and_counts_the_body_once() -> None:
    res = make_response(
        request(),
        200,
        headers=[
            ("contact", "<sip:a@192.0.2.1>;expires=60"),
            ("Content-Length", 0),
            ("m", "<sip:b@c>"),
        ],
        body=b"hi",
    )
    # a name in lower case or compact form is spelled out, as Message.add does
    assert [f.name for f in res.fields][-3:] == ["Contact", "Content-Length", "Contact"]
    assert res.get_all("Content-Length") == ["2"] and res.body == b"hi"
    assert [str(c.uri) for c in res.contacts] == ["sip:a@192.0.2.1", "sip:b@c"]
    assert response(res.serialize()) == res


@pytest.mark.parametrize(
    ("to", "tagged"),
    [
        ("<sip:bob@b.example>", "<sip:bob@b.example>;tag=abc"),
        (
            '"Bob" <sip:bob@b.example;user=phone>;x=1',
            '"Bob" <sip:bob@b.example;user=phone>;x=1;tag=abc',
        ),
        # without brackets the URI has no parameters: what follows it is the header's
        ("sip:bob@b.example;x=1", "sip:bob@b.example;x=1;tag=abc"),
    ],
)
def test_a_response_tags_the_to_of_the_request_as_written(to: str, tagged: str) -> None:
    """The To is copied as written, with the tag after its parameters (RFC 3261 sections
    8.2.6.2 and 20), under the name the request used (here the compact "t"); a To that
    has a tag keeps it; Content-Length is counted once."""
    req = request(INVITE.replace(b'To: "Bob" <sip:bob@biloxi.example.com>', b"t: " + to.encode()))
    res = make_response(req, 486, to_tag="abc", body=b"hello")
    line = next(f for f in res.fields if f.key == "to")
    assert (line.name, line.value) == ("t", tagged)
    assert res.to.tag == "abc" and res.to == response(res.serialize()).to
    assert [f.key for f in res.fields] == ["via", "from", "to", "call-id", "cseq", "content-length"]
    assert res.get_all("Content-Length") == ["5"] and res.body == b"hello"
    tagged_request = request(
        INVITE.replace(b'To: "Bob" <sip:bob@biloxi.example.com>', b"To: " + tagged.encode())
    )
    assert make_response(tagged_request, 486, to_tag="new").get("To") == tagged


def test_a_content_length_given_by_the_caller_is_not_repeated() -> None:
    res = make_response(request(), 200, headers=[("Content-Length", 99)], body=b"abc")
    assert res.get_all("Content-Length") == ["3"]


def test_set_body_updates_content_length() -> None:
    m = request()
    m.set_body(b"hello", "text/plain")
    again = parse(m.serialize())
    assert (
        again.body == b"hello" and again.content_length == 5 and again.content_type == "text/plain"
    )


def test_request_uri_change() -> None:
    m = request()
    m.set_uri(parse_uri("sip:bob@192.0.2.4:5062"))
    assert parse(m.serialize()).start_line() == "INVITE sip:bob@192.0.2.4:5062 SIP/2.0"


def test_responses() -> None:
    r = response(msg(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1;rport=5070",
        "From: <sip:a@b>;tag=1",
        "To: <sip:c@d>;tag=2",
        "Call-ID: r1",
        "CSeq: 1 INVITE",
        "Record-Route: <sip:p1;lr>, <sip:p2;lr>",
        "Content-Length: 0",
    ))  # fmt: skip
    assert r.status == 180 and r.is_provisional and r.top_via.rport == 5070
    assert [str(x) for x in r.record_routes] == ["<sip:p1;lr>", "<sip:p2;lr>"]


def test_wildcard_contact_must_stand_alone() -> None:
    m = request(
        INVITE.replace(b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: *, <sip:a@b>")
    )
    with pytest.raises(ParseError, match=r"\*"):
        m.contacts  # noqa: B018


def test_local_misuse_is_not_a_parse_error() -> None:
    from sipgrid.sip import LocalProtocolError, Response

    with pytest.raises(LocalProtocolError):
        Request("BAD METHOD", parse_uri("sip:a@b"))
    with pytest.raises(LocalProtocolError):
        Response(99)


def test_set_top_via_and_copy() -> None:
    m = request(
        INVITE.replace(b"Max-Forwards", b"Via: SIP/2.0/UDP second;branch=z9hG4bK2\r\nMax-Forwards")
    )
    clone = m.copy()
    m.set_top_via(m.top_via.with_param("received", "192.0.2.9"))
    assert (
        m.top_via.received == "192.0.2.9" and parse(m.serialize()).top_via.received == "192.0.2.9"
    )
    assert clone.top_via.received is None and clone.serialize() == INVITE.replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP second;branch=z9hG4bK2\r\nMax-Forwards"
    )
    clone.add("X-Only-Clone", "1")
    assert "X-Only-Clone" not in m and isinstance(clone, Request) and clone.method == "INVITE"
    assert [v.host for v in m.vias] == ["pc33.atlanta.example.com", "second"]


def test_push_via_goes_above_the_others_and_stays_parsed() -> None:
    m = request(
        INVITE.replace(b"Max-Forwards", b"X-Before: 1\r\nMax-Forwards").replace(
            b"Via:", b"X-Top: 1\r\nVia:", 1
        )
    )
    ours = Via("UDP", "192.0.2.1", 5062, (("branch", "z9hG4bK-ours"), ("rport", None)))
    m.push_via(ours)
    assert m.top_via is ours
    names = [f.key for f in m.fields]
    assert names.index("via") == names.index("x-top") + 1  # where the Via lines were
    again = parse(m.serialize())
    assert again.top_via == ours
    assert str(again.top_via) == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-ours;rport"
    assert [v.host for v in again.vias] == ["192.0.2.1", "pc33.atlanta.example.com"]
    bare = Request("OPTIONS", parse_uri("sip:a@b"))
    bare.push_via(ours)
    assert bare.top_via is ours and bare.fields[0].key == "via"


def test_header_params_by_name_in_any_case() -> None:
    via = Via.parse("SIP/2.0/UDP h;Branch=z9hG4bK1;RPORT;received=192.0.2.2")
    assert via.branch == "z9hG4bK1" and via.param("BRANCH") == "z9hG4bK1"
    assert via.param("rport") == "" and via.wants_rport and via.received == "192.0.2.2"
    assert via.param("maddr") is None
    assert format_header_params(via.params) == ";Branch=z9hG4bK1;RPORT;received=192.0.2.2"


# -- texts parsed lately are not parsed again (uri.remembered)


def test_a_text_parsed_again_gives_the_value_parsed_before() -> None:
    text = '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'
    first = NameAddr.parse(text, "From")
    assert NameAddr.parse(text, "Contact") is first  # the place named changes only errors
    assert Via.parse("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776") is Via.parse(
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776"
    )
    assert CSeq.parse("314159 INVITE") is CSeq.parse("314159 INVITE")
    assert parse_uri("sip:bob@biloxi.example.com") is parse_uri("sip:bob@biloxi.example.com")
    # and what a memo gives is what parsing gives
    assert first == NameAddr._parse(text, "From")


@pytest.mark.parametrize(
    ("read", "text"),
    [
        (lambda t: NameAddr.parse(t, "From"), "Alice <sip:alice@atlanta.example.com"),
        (Via.parse, "SIP/2.0/UDP"),
        (CSeq.parse, "1 INVITE x"),
        (lambda t: parse_uri(t, what="Request-URI"), "sip:"),
    ],
)
def test_a_text_that_fails_fails_every_time(read: Any, text: str) -> None:
    for _ in range(2):
        with pytest.raises(ParseError):
            read(text)


def test_the_memo_of_parsed_texts_stays_bounded() -> None:
    for n in range(MEMO_SIZE + 10):
        NameAddr.parse(f"<sip:user{n}@example.com>;tag={n}")
    assert 0 < len(headers._name_addrs) <= MEMO_SIZE
    assert NameAddr.parse("<sip:user1@example.com>;tag=1").params == (("tag", "1"),)


def test_a_continuation_line_is_never_read_as_a_header_of_its_own() -> None:
    """The fast pass reads names it has met before; a continuation line (SP or HTAB first,
    RFC 3261 section 7.3.1) is never one of them, even when its text after the white space
    is, so the message goes to the careful pass, which unfolds it."""
    request(
        INVITE.replace(b"Max-Forwards: 70", b"Subject: first\r\nX-Color: red\r\nMax-Forwards: 70")
    )
    data = INVITE.replace(
        b"Max-Forwards: 70", b"Subject: pick up\r\n\tX-Color: blue\r\nMax-Forwards: 70"
    )
    m = request(data)
    assert m.get("Subject") == "pick up X-Color: blue"
    assert m.get("X-Color") is None
    assert m.max_forwards == 70
    assert m.serialize() == data
