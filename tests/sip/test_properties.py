"""Hypothesis properties of the parser: round trips, and nothing but ParseError on junk."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from sipgrid.sip import HeaderField, ParseError, Request, Response, SipUri, StreamFramer, parse
from sipgrid.sip.message import Message
from tests.sip.helpers import fast_modules

from .helpers import INVITE, torture

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
PARAM_CHARS = string.ascii_letters + string.digits + "-_.!~*'()[]/:&+$"
uri_params = st.text(PARAM_CHARS, min_size=1, max_size=8)
hosts = st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z][a-z0-9\-]{0,10}){0,3}", fullmatch=True)
users = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1, max_size=12)
# header values: any text without CR, LF or NUL, trimmed (a parser trims surrounding white space)
values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=40
).map(lambda v: v.strip(" \t"))


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        host=draw(hosts),
        user=draw(st.none() | users),
        port=draw(st.none() | st.integers(1, 65535)),
        params=tuple(draw(st.lists(st.tuples(uri_params, st.none() | uri_params), max_size=3))),
    )


@st.composite
def messages(draw: st.DrawFn) -> Message:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]) | tokens)
    branch = "z9hG4bK" + draw(tokens)
    fields = [
        HeaderField(
            "via",
            "Via",
            f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS', 'WS']))} {draw(hosts)};branch={branch}",
        ),
        HeaderField(
            "from",
            draw(st.sampled_from(["From", "f", "FROM"])),
            f"<{draw(sip_uris())}>;tag={draw(tokens)}",
        ),
        HeaderField(
            "to",
            "To",
            f'"{draw(st.text(string.ascii_letters + " ", max_size=10))}" <{draw(sip_uris())}>',
        ),
        HeaderField("call-id", "Call-ID", draw(tokens) + "@" + draw(hosts)),
        HeaderField("cseq", "CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        HeaderField("max-forwards", "Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    for _ in range(draw(st.integers(0, 5))):
        name = "X-" + draw(tokens)
        fields.append(HeaderField(name.lower(), name, draw(values)))
    draw(st.randoms()).shuffle(fields)
    body = draw(st.binary(max_size=64))
    message: Message
    if draw(st.booleans()):
        message = Request(method, draw(sip_uris()), fields)
    else:
        message = Response(draw(st.integers(100, 699)), draw(values), fields)
    message.set_body(body)
    return message


@given(messages())
@settings(max_examples=200)
def test_parse_serialize_round_trip(message: Message) -> None:
    data = message.serialize()
    parsed = parse(data)
    assert parsed == message
    assert parsed.serialize() == data
    parsed.add("X-Added", "1", first=True)
    assert parse(parsed.serialize()) == parsed


@given(sip_uris())
def test_uri_round_trip(uri: SipUri) -> None:
    from sipgrid.sip import parse_uri

    assert parse_uri(str(uri)) == uri


def _read_everything(message: Message) -> None:
    message.vias  # noqa: B018
    message.contacts  # noqa: B018
    message.record_routes  # noqa: B018
    message.expires  # noqa: B018
    message.authorizations  # noqa: B018
    message.proxy_authorizations  # noqa: B018
    message.www_authenticates  # noqa: B018
    message.proxy_authenticates  # noqa: B018
    message.tokens("Require")
    message.tokens("Supported")
    message.serialize()


def _only_parse_errors(data: bytes) -> None:
    try:
        message = parse(data)
        _read_everything(message)
    except ParseError:
        pass


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    _only_parse_errors(data)


SEEDS = [INVITE, torture("wsinv"), torture("intmeth"), torture("regaut01"), torture("mpart01")]


@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 2000), st.binary(min_size=0, max_size=4), st.integers(0, 4)),
        min_size=1,
        max_size=6,
    ),
)
@settings(max_examples=400)
def test_mutated_messages_raise_only_parse_error(
    seed: bytes, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(seed)
    for position, insert, delete in edits:
        position %= len(data) + 1
        data[position : position + delete] = insert
    _only_parse_errors(bytes(data))


AUTH_SEED = INVITE.replace(
    b"Max-Forwards: 70",
    b'Max-Forwards: 70\r\nAuthorization: Digest username="a", realm="b", nonce="c", uri="sip:x", response="d", qop=auth, nc=00000001, cnonce="e"\r\nWWW-Authenticate: Digest realm="b", nonce="c", qop="auth"',
)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2000),
            st.sampled_from([b'"', b",", b"=", b" ", b"\\", b";", b"<", b">", b":"]),
        ),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=500)
def test_mutated_auth_headers_raise_only_parse_error(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(AUTH_SEED)
    for position, insert in edits:
        position %= len(data) + 1
        data[position:position] = insert
    _only_parse_errors(bytes(data))


@given(
    st.lists(st.sampled_from(SEEDS[:2]), min_size=1, max_size=4),
    st.lists(st.integers(1, 50), min_size=1),
)
def test_stream_framing_is_independent_of_chunking(seeds: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(seeds)
    framer = StreamFramer()
    got: list[bytes] = []
    i = 0
    k = 0
    while i < len(stream):
        size = sizes[k % len(sizes)]
        framer.feed(stream[i : i + size])
        i += size
        k += 1
        while (event := framer.next_event()) is not None:
            assert isinstance(event, (Request, Response))
            got.append(event.serialize())
    assert got == [parse(s).serialize() for s in seeds]


# what a SIP URI's text after "sip:" may hold, "@" aside, and some that it may not
URI_CHARS = string.ascii_letters[:6] + "0123:;=.[]?&%-_~" + " <\u00e9"


@given(st.text(URI_CHARS, max_size=30) | sip_uris().map(lambda u: str(u).partition(":")[2]))
@settings(max_examples=500)
def test_a_uri_text_without_at_reads_alike_by_the_regex_without_a_user_part(rest: str) -> None:
    """The regex for a URI with no "@" gives what the full one gives (no user, no password):
    sipgrid/sip/_fast.py's, the reference of _fast.c's sip_uri."""
    reference = fast_modules()[0]
    rest = rest.replace("@", "")
    full = reference._sip_uri_re.fullmatch(rest)
    short = reference._sip_uri_no_user_re.fullmatch(rest)
    assert (full is None) == (short is None)
    if full is not None and short is not None:
        assert full.groups() == (None, None, *short.groups())
