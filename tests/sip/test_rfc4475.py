"""Every RFC 4475 torture message, against the verdict table in its README.

The verdict chosen per message is written in the tables below, with the RFC section.
"""

from __future__ import annotations

import pytest

from sipgrid.sip import AbsoluteUri, ParseError, Request, Response, SipUri, error_response, parse
from sipgrid.sip.checks import check_proxy_request, check_uas_request

from .helpers import TORTURE_DIR, torture

# 3.1.1 valid messages: must parse, and the routing headers read back right.
VALID = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason",
}  # fmt: skip

# 3.1.2 invalid messages: (what happens, status hint, faulty header or None for the start line).
#   "reject": parse() raises ParseError with that status (a response is dropped).
#   "forward": parse() succeeds with the bad part left opaque, as the RFC allows a proxy.
#   "lazy": parse() succeeds (a proxy need not read the header); reading it raises ParseError.
INVALID = {
    "badinv01": ("reject", 400, "Via"),  # empty Via parameters and values
    "clerr": ("reject", 400, "Content-Length"),  # Content-Length longer than the datagram
    "ncl": ("reject", 400, "Content-Length"),  # negative Content-Length
    "scalar02": ("reject", 400, "CSeq"),  # CSeq over 2**31; Max-Forwards 300
    "scalarlg": ("reject", 400, "CSeq"),  # response: dropped
    "quotbal": ("reject", 400, "To"),  # unterminated quoted display name
    "ltgtruri": ("reject", 400, "Request-URI"),  # <> around the Request-URI
    "lwsruri": ("reject", 400, None),  # SP inside the Request-URI
    "lwsstart": ("reject", 400, None),  # two SPs between Request-Line elements
    "trws": ("reject", 400, None),  # trailing SP after SIP/2.0: we are strict here
    "escruri": ("reject", 400, "Request-URI"),  # headers in the Request-URI
    "baddate": ("forward", None, None),  # Date not in GMT: a proxy forwards it untouched
    "regbadct": ("lazy", 400, "Contact"),  # URI with '?' outside <>: the registrar says 400
    "badaspec": ("reject", 400, "To"),  # white space inside <>
    "baddn": ("reject", 400, "From"),  # unquoted display name with a comma
    "badvers": ("reject", 505, None),  # SIP/7.0
    "mismatch01": ("reject", 400, "CSeq"),  # CSeq method differs from the request method
    "mismatch02": ("reject", 400, "CSeq"),  # unknown method, CSeq method differs
    "bigcode": ("reject", 400, None),  # response with status 4294967301: dropped
}

# 3.2, 3.3 and 3.4: parse, then a proxy (P) or a UAS (U) answers as the RFC says.
# None means the request goes on. Where the parser itself gives the RFC's answer (insuf,
# multi01, mcl01: a 400 for headers we route or frame on), the entry is ("parse", 400).
SEMANTIC = {
    "badbranch": ("P", None),  # branch is just the magic cookie: still an RFC 3261 branch
    "insuf": ("parse", 400),  # no Call-ID, From or To
    "unkscm": ("P", 416),  # unknown Request-URI scheme
    "novelsc": ("P", 416),  # soap.beep: Request-URI: not one we route
    "unksm2": ("P", None),  # unknown schemes in To, From and Contact are fine
    "bext01": ("P", 420),  # Proxy-Require of unknown options (and 420 from a UAS for Require)
    "invut": ("U", 415),  # body of an unknown type: a proxy forwards, a UAS says 415
    "regaut01": ("P", None),  # unknown Authorization scheme: the registrar challenges
    "multi01": ("parse", 400),  # several Call-ID, CSeq, From, To, Max-Forwards
    "mcl01": ("parse", 400),  # two Content-Length values: framing is ambiguous
    "bcast": (
        "response",
        None,
    ),  # 200 OK with a broadcast Via: parses; sending is the transport's choice
    "zeromf": ("P", 483),  # Max-Forwards 0
    "cparam01": ("P", None),  # Contact parameters in addr-spec form are header parameters
    "cparam02": ("P", None),  # ...and inside <> they are URI parameters
    "regescrt": ("P", None),  # escaped Route in a Contact URI: well-formed
    "sdp01": ("U", 406),  # Accept allows no type the UAS can answer with
    "inv2543": ("P", None),  # RFC 2543 style: no branch, no From tag
}


def test_every_file_has_a_verdict() -> None:
    names = {p.stem for p in TORTURE_DIR.glob("*.dat")}
    assert names == VALID | set(INVALID) | set(SEMANTIC)
    assert len(names) == 49


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_parse(name: str) -> None:
    message = parse(torture(name))
    message.validate()
    assert message.call_id.startswith(name) or name == "mpart01"
    assert message.top_via.transport in {"UDP", "TCP", "TLS", "SCTP", "UNKNOWN"}
    if isinstance(message, Request):
        assert message.cseq.method == message.method
    # unchanged messages serialize to exactly the bytes they came from
    data = torture(name)
    assert data.startswith(message.serialize())


@pytest.mark.parametrize(("name", "verdict"), sorted(INVALID.items()))
def test_invalid_messages(name: str, verdict: tuple[str, int | None, str | None]) -> None:
    kind, status, header = verdict
    data = torture(name)
    if kind == "reject":
        with pytest.raises(ParseError) as info:
            parse(data)
        assert info.value.status == status
        assert info.value.header == header
        assert info.value.reason
        if not data.startswith(b"SIP/"):
            answer = error_response(info.value)
            assert answer.status == status
            assert answer.get("Call-ID") is None or answer.get("Call-ID") == _call_id(data)
    elif kind == "forward":
        message = parse(data)
        assert message.serialize() == data[: len(message.serialize())]
    else:
        message = parse(data)
        with pytest.raises(ParseError) as info:
            message.contacts  # noqa: B018
        assert (info.value.status, info.value.header) == (status, header)


def _call_id(data: bytes) -> str:
    for line in data.decode().split("\r\n"):
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Call-ID")


@pytest.mark.parametrize(("name", "verdict"), sorted(SEMANTIC.items()))
def test_semantic_messages(name: str, verdict: tuple[str, int | None]) -> None:
    who, status = verdict
    data = torture(name)
    if who == "parse":
        with pytest.raises(ParseError) as info:
            parse(data)
        assert info.value.status == status
        return
    message = parse(data)
    if who == "response":
        assert isinstance(message, Response)
        return
    assert isinstance(message, Request)
    answer = check_proxy_request(message) if who == "P" else check_uas_request(message)
    assert (answer.status if answer else None) == status


def test_wsinv_reads_through_folding_and_white_space() -> None:
    m = parse(torture("wsinv"))
    assert isinstance(m, Request)
    assert m.to.tag == "1918181833n"
    assert m.from_.tag == "98asjd8"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.max_forwards == 68
    assert (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.get("Subject") == ""
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (route,) = m.routes
    assert (
        isinstance(route.uri, SipUri) and route.uri.lr and route.uri.host == "services.example.com"
    )
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.q == 0.33 and contact.param("newparam") == "newvalue"
    assert m.content_length == 150 and len(m.body) == 150


def test_intmeth_odd_but_legal_characters() -> None:
    m = parse(torture("intmeth"))
    assert isinstance(m, Request) and isinstance(m.uri, SipUri)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_kept_as_written() -> None:
    m = parse(torture("esc01"))
    assert isinstance(m, Request) and isinstance(m.uri, SipUri)
    assert m.uri.user == "sips%3Auser%40example.com"
    m2 = parse(torture("esc02"))
    assert isinstance(m2, Request) and m2.method == "RE%47IST%45R"
    # "C%6Fntact" is not Contact: escapes do not apply to header names
    assert len(m2.contacts) == 2 and m2.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_semiuri_and_transports_and_multipart() -> None:
    m = parse(torture("semiuri"))
    assert isinstance(m, Request) and isinstance(m.uri, SipUri)
    assert (m.uri.user, m.uri.host) == ("user;par=u%40example.net", "example.com")
    assert len(m.values("Accept")) == 6
    t = parse(torture("transports"))
    assert [v.transport for v in t.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mp = parse(torture("mpart01"))
    assert mp.content_type == "multipart/mixed" and len(mp.body) == mp.content_length


def test_dblreq_keeps_only_the_first_request() -> None:
    data = torture("dblreq")
    m = parse(data)
    assert isinstance(m, Request) and m.method == "REGISTER" and m.body == b""
    assert b"INVITE" in data[len(m.serialize()) :]


def test_unknown_schemes_stay_opaque() -> None:
    m = parse(torture("unkscm"))
    assert isinstance(m, Request) and m.uri == AbsoluteUri(
        "nobodyKnowsThisScheme", "totallyopaquecontent"
    )
    m2 = parse(torture("unksm2"))
    assert str(m2.to.uri) == "isbn:2983792873" and str(m2.from_.uri) == "http://www.example.com"
    assert str(m2.contacts[0].uri) == "name:John_Smith"


def test_bext01_lists_unsupported_options() -> None:
    m = parse(torture("bext01"))
    assert isinstance(m, Request)
    proxy = check_proxy_request(m)
    assert (
        proxy is not None
        and proxy.get("Unsupported") == "noProxiesSupportThis, norDoAnyProxiesSupportThis"
    )
    uas = check_uas_request(m)
    assert uas is not None and uas.status == 420
    assert uas.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"


def test_scalar02_expiry_is_capped() -> None:
    data = torture("scalar02").replace(b"CSeq: 36893488147419103232", b"CSeq: 1")
    with pytest.raises(ParseError, match="Max-Forwards"):
        parse(data)
    m = parse(data.replace(b"Max-Forwards: 300", b"Max-Forwards: 30"))
    assert m.expires == 2**32 - 1
    assert m.contacts[0].expires == 2**32 - 1


def test_inv2543_transaction_keys_without_magic_cookie() -> None:
    m = parse(torture("inv2543"))
    assert not m.top_via.has_magic_cookie and m.top_via.branch is None
    assert m.from_.tag is None
