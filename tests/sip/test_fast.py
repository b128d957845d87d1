"""sipgrid/sip/_fast.c gives the answers of sipgrid/sip/_fast.py, its reference, on texts
made to sit on the edges of the shapes they read (hypothesis), and on the RFC 4475 torture
messages' own lines. Both are loaded from their files, so this runs the same whether the
package runs compiled or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sip.helpers import TORTURE_DIR, fast_modules

REFERENCE, BUILT = fast_modules()
if BUILT is None:
    # make install builds it (native/build.py); only a machine without a C compiler lacks it
    pytest.skip("sipgrid/_compiled holds no build of _fast.c", allow_module_level=True)
C = BUILT


def test_the_c_module_is_the_one_built() -> None:
    assert Path(C.__file__ or "").suffix == ".so"
    assert Path(REFERENCE.__file__ or "").suffix == ".py"


# characters that end, split or spoil each shape, and some that are only text
EDGES = ';=,:"\\\r\n \t[]<>@/' + "aZz09-.!%*_+`'~" + "é☃\udc80\x00\x7f"
edgy = st.text(alphabet=EDGES, max_size=40)
tokens = st.text(alphabet="aZz09-.!%*_+`'~", min_size=0, max_size=8)
blanks = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def params_texts(draw: st.DrawFn) -> str:
    """``;name[=value]`` items, most of them well formed."""
    items = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(tokens, edgy))
        value = draw(st.one_of(st.none(), tokens, st.just("[2001:db8::1]:5060"), edgy))
        items.append(f";{name}" if value is None else f";{name}={value}")
    return "".join(items)


@st.composite
def digest_texts(draw: st.DrawFn) -> str:
    """What follows ``Digest`` in credentials: names, values quoted or not, blanks and
    commas, most of them as clients write them."""
    names = st.one_of(
        st.sampled_from(["username", "realm", "nonce", "uri", "response", "qop", "nc", "Realm"]),
        tokens,
        st.text(alphabet="aB-", min_size=60, max_size=80),  # past the C's short name buffer
        edgy,
    )
    items = []
    for _ in range(draw(st.integers(0, 5))):
        value = draw(st.one_of(tokens, edgy))
        if draw(st.booleans()):
            value = f'"{value}"'
        items.append(
            draw(blanks) + draw(names) + draw(blanks) + "=" + draw(blanks) + value + draw(blanks)
        )
    return draw(st.sampled_from([",", ", ", ",\t"])).join(items) + draw(
        st.sampled_from(["", ",", ", ", " "])
    )


KNOWN = {"Via": ("via", "Via"), "v": ("via", "v"), "To": ("to", "To"), "X-É": ("x-é", "X-É")}


@st.composite
def header_lines(draw: st.DrawFn) -> list[str]:
    lines = ["INVITE sip:a@b SIP/2.0"]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(sorted(KNOWN)), edgy))
        colon = draw(st.sampled_from([":", " :", "", "::"]))
        lines.append(name + colon + draw(blanks) + draw(edgy) + draw(blanks))
    return lines


URI_EDGES = "@:;=?[]./-_!~*'()&+$,%#" + "aF9z" + " <\u00e9\u0665"


@st.composite
def uri_texts(draw: st.DrawFn) -> str:
    """What follows ``sip:``: user and password, host, port, parameters and headers, each
    present or not, most of them well formed."""
    part = st.text(alphabet=URI_EDGES, max_size=6)
    text = ""
    if draw(st.booleans()):
        text += draw(st.sampled_from(["alice", "a;b?c", "", "1001"])) or draw(part)
        if draw(st.booleans()):
            text += ":" + draw(st.one_of(st.sampled_from(["pw", ""]), part))
        text += "@"
    text += draw(st.sampled_from(["host.example", "127.0.0.1", "[::1]", "[]", "h_1", ""]))
    if draw(st.booleans()):
        text += ":" + draw(
            st.sampled_from(["5060", "65535", "65536", "123456", "012345", "0", "\u0665"])
        )
    for _ in range(draw(st.integers(0, 3))):
        text += ";" + draw(
            st.one_of(st.sampled_from(["lr", "transport=tcp", "x=", "[a]=/:"]), part)
        )
    if draw(st.booleans()):
        text += "?" + draw(st.one_of(st.sampled_from(["", "a=b&c=d", "x?y"]), part))
    return text + draw(st.sampled_from(["", "", draw(part)]))


@settings(max_examples=600)
@given(st.one_of(uri_texts(), st.text(alphabet=URI_EDGES, max_size=30)))
def test_sip_uri(text: str) -> None:
    assert C.sip_uri(text) == REFERENCE.sip_uri(text)


@settings(max_examples=400)
@given(st.one_of(params_texts(), edgy))
def test_header_params(text: str) -> None:
    assert C.header_params(text) == REFERENCE.header_params(text)


@settings(max_examples=400)
@given(st.one_of(digest_texts(), edgy))
def test_digest_params(text: str) -> None:
    assert C.digest_params(text) == REFERENCE.digest_params(text)


@settings(max_examples=400)
@given(header_lines())
def test_fields(lines: list[str]) -> None:
    assert C.fields(lines, KNOWN) == REFERENCE.fields(lines, KNOWN)


def test_the_torture_messages_lines() -> None:
    """Every header line of RFC 4475's messages, and each value's parameters and digest
    parameters, read alike (the names known are those the messages use)."""
    checked = 0
    for path in sorted(TORTURE_DIR.iterdir()):
        head = path.read_bytes().partition(b"\r\n\r\n")[0].decode("utf-8", "surrogateescape")
        lines = head.split("\r\n")
        known = {line.partition(":")[0]: ("k", "n") for line in lines[1:]}
        assert C.fields(lines, known) == REFERENCE.fields(lines, known)
        for line in lines[1:]:
            value = line.partition(":")[2]
            for cut in (value.find(";"), value.find(" ")):
                if cut >= 0:
                    part = value[cut:].strip()
                    assert C.header_params(part) == REFERENCE.header_params(part)
                    assert C.digest_params(part) == REFERENCE.digest_params(part)
                    checked += 1
            for word in value.replace("<", " ").replace(">", " ").split():
                rest = word.partition(":")[2]
                assert C.sip_uri(rest) == REFERENCE.sip_uri(rest)
    assert checked > 50


def test_shapes_read_and_refused() -> None:
    """A few answers by hand, so that the two cannot agree on nonsense."""
    for module in (C, REFERENCE):
        assert module.header_params(";branch=z9hG4bK-1;rport;maddr=[::1]") == (
            ("branch", "z9hG4bK-1"),
            ("rport", None),
            ("maddr", "[::1]"),
        )
        for text in ("", ";", ";a=", "; a", ';a="b"', "a;b", ";a=b c"):
            assert module.header_params(text) is None
        assert module.sip_uri("a:@[::1]:05060;lr;x=[y]?z=1") == (
            "a",
            "",
            "[::1]",
            5060,
            (("lr", None), ("x", "[y]")),
            "z=1",
        )
        assert module.sip_uri("h") == (None, None, "h", None, (), None)
        for text in (
            "",
            "@h",
            "h:",
            "h:65536",
            "h:000001",
            "h:\u0665",
            "h;",
            "h;=a",
            "a@b@c",
            "[]",
            "h?a;b",
            "h j",
        ):
            assert module.sip_uri(text) is None
        assert module.digest_params(' username="A b",Realm=x , nc=00000001,') == {
            "username": "A b",
            "realm": "x",
            "nc": "00000001",
        }
        for text in ('a="b\\"c"', "a=b c", 'a="b" c', "a=b,,c=d", "=b", 'a="b', "a=b, "):
            assert module.digest_params(text) is None
        known = {"To": ("to", "To"), "v ": ("via", "v")}
        assert module.fields(["R", "To:  b \t", "v :a:b"], known) == [
            "to",
            "To",
            "b",
            "via",
            "v",
            "a:b",
        ]
        assert module.fields(["R"], known) == []
        assert module.fields(["R", "To b"], {"To b": ("to", "To")}) is None
        assert module.fields(["R", "To: b", "Tx: c"], known) is None


def test_type_errors_are_raised_not_crashed() -> None:
    with pytest.raises(TypeError):
        C.header_params(b";a")
    with pytest.raises(TypeError):
        C.digest_params(None)
    with pytest.raises(TypeError):
        C.sip_uri(1)
    with pytest.raises(TypeError):
        C.fields(("R",), {})
    with pytest.raises(TypeError):
        C.fields(["R", b"To: b"], {})
    with pytest.raises(TypeError):
        C.fields(["R", "To: b"], {"To": "to"})
    with pytest.raises(TypeError):
        C.fields(["R"])


class Unequal(str):
    """A name that raises when compared, as a dict's lookup compares it."""

    def __eq__(self, other: object) -> bool:
        raise ZeroDivisionError

    __hash__ = str.__hash__


def test_an_error_in_the_lookup_comes_out() -> None:
    with pytest.raises(ZeroDivisionError):
        C.fields(["R", "To: b"], {Unequal("To"): ("to", "To")})
