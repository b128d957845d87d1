"""Typed header values: Via, name-addr (From, To, Contact, Route, Record-Route), CSeq.

Each is a frozen dataclass with ``parse(text)`` and ``__str__``. The grammar is RFC
3261 section 25; parameters may carry linear white space around ";" and "=", as the
RFC 4475 torture messages do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from . import _abnf, _fast
from .errors import ParseError
from .uri import SipUri, Uri, parse_uri, remembered

Params = tuple[tuple[str, str | None], ...]

_WS: Final = " \t"


def split_commas(text: str) -> list[str]:
    """Split a header value on the commas that separate values (RFC 3261 section 7.3.1).

    Commas inside quoted strings and angle brackets do not separate.
    """
    if "," not in text:
        return [text]
    if '"' not in text:
        if "<" not in text:
            return text.split(",")
        return _comma_outside_angles.split(text)
    parts: list[str] = []
    current: list[str] = []
    for piece in _comma_pieces.findall(text):
        if piece == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(piece)
    parts.append("".join(current))
    return parts


# quoted strings (escapes kept), <...>, other text, and the separating commas
_comma_pieces: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^>]*>?|[^,"<]+|,', re.DOTALL)

# a comma not inside <...> (no quotes in the text, so no ">" hides in a display name)
_comma_outside_angles: Final = re.compile(r",(?![^<]*>)")


def read_quoted(text: str, start: int, what: str) -> tuple[str, int]:
    """Read the quoted-string at text[start] ('"'); return its unescaped content and the end index.

    quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
    quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F)
    """
    end = text.find('"', start + 1)
    if end >= 0 and text.find("\\", start + 1, end) < 0:
        return text[start + 1 : end], end + 1  # nothing escaped: one slice
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                break
            out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    raise ParseError(f"{what}: unterminated quoted string", header=what)


def _unescape(quoted: str) -> str:
    return read_quoted(f'"{quoted}"', 0, "quoted string")[0]


def parse_header_params(text: str, what: str) -> Params:
    """Parse ``*( SEMI generic-param )`` where text starts at the first ';'.

    generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string
    Values keep their quotes, so that ``str()`` gives them back as written.
    """
    simple = _fast.header_params(text)  # no white space, no quotes: nearly every message
    if simple is not None:
        return simple
    params: list[tuple[str, str | None]] = []
    i = 0
    n = len(text)
    while i < n:
        if text[i] != ";":
            raise ParseError(f"{what}: expected ';' before parameter", header=what)
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        m = _abnf.token_re.match(text, i)
        if not m:
            raise ParseError(f"{what}: empty or malformed parameter", header=what)
        name = m.group()
        i = m.end()
        while i < n and text[i] in _WS:
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] == '"':
                _, end = read_quoted(text, i, what)
                value = text[i:end]
                i = end
            else:
                m = _VALUE_RE.match(text, i)
                if not m:
                    raise ParseError(f"{what}: parameter {name!r} has no value", header=what)
                value = m.group()
                i = m.end()
            while i < n and text[i] in _WS:
                i += 1
        params.append((name, value))
    return tuple(params)


# gen-value = token / host / quoted-string (host adds ":" "[" "]" for IPv6)
_VALUE_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")


# Via in its usual shape, up to its parameters: no white space around "/", one SP
# before sent-by.
_simple_via_head_re: Final = re.compile(
    rf"SIP/2\.0/({_abnf.TOKEN}) ({_abnf.HOST})(?::([0-9]{{1,5}}))?"
)

# name-addr in its usual shape: an optional display name, then <URI>, then parameters.
_simple_name_addr_re: Final = re.compile(
    rf"(?:\"((?:[^\"\\]|\\.)*)\"[ \t]*|((?:{_abnf.TOKEN}[ \t]+)*))<([^<> \t\"]+)>((?:;.*)?)"
)


def format_header_params(params: Params) -> str:
    parts: list[str] = []  # a loop: mypyc makes a generator object of a genexpr
    for n, v in params:
        parts.append(f";{n}" if v is None else f";{n}={v}")
    return "".join(parts)


def get_header_param(params: Params, name: str) -> str | None:
    """A parameter's value, unquoted; "" for a flag; None when absent. Names are case-insensitive."""
    lname = ""
    for n, v in params:
        if n != name:
            if not lname:
                lname = name.lower()
            if n.lower() != lname:
                continue
        if v is None:
            return ""
        if v.startswith('"'):
            return read_quoted(v, 0, name)[0]
        return v
    return None


def set_header_param(params: Params, name: str, value: str | None) -> Params:
    """Set (or, with value None, remove) a parameter, keeping the others in order."""
    lname = name.lower()
    out = [(n, v) for n, v in params if n.lower() != lname]
    if value is not None:
        for index, (n, _) in enumerate(params):
            if n.lower() == lname:
                out.insert(index, (name, value or None))
                break
        else:
            out.append((name, value or None))
    return tuple(out)


def _int_in_range(text: str, what: str, upper: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ParseError(f"{what}: not a number: {text!r}", header=what)
    value = int(text)
    if value > upper:
        raise ParseError(f"{what}: value {text} out of range", header=what)
    return value


@dataclass(frozen=True, slots=True, init=False)
class Via:
    """One Via value (RFC 3261 section 20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None
    params: Params
    protocol: str
    # read on every transaction lookup: found once, when the value is made
    branch: str | None = field(init=False, compare=False, repr=False)

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params = (),
        protocol: str = "SIP/2.0",
    ) -> None:
        # written out: mypyc compiles this one, and leaves the one dataclass would
        # generate to the interpreter, five times dearer (bench/README.md)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "branch", get_header_param(params, "branch"))

    @classmethod
    def parse(cls, text: str) -> Via:
        found = _vias.get(text)
        if found is not None:
            return found
        return remembered(_vias, text, cls._parse(text))

    @classmethod
    def _parse(cls, text: str) -> Via:
        # Every message's branch is new, so the whole value is seldom met twice; what
        # comes before the parameters (a client's sent-by) nearly always is.
        semi = text.find(";")
        head = text[:semi] if semi >= 0 else text
        sent = _sent_bys.get(head)
        if sent is None:
            m = _simple_via_head_re.fullmatch(head)
            if m is not None:
                transport, host, port = m.groups()
                sent = remembered(
                    _sent_bys,
                    head,
                    (transport.upper(), host, _int_in_range(port, "Via", 65535) if port else None),
                )
        if sent is not None:
            # Via(...), not cls(...): mypyc calls its own class directly, with no
            # keywords to sort out (cls(...) is a Python call, 1 µs dearer)
            return Via(
                sent[0],
                sent[1],
                sent[2],
                parse_header_params(text[semi:], "Via") if semi >= 0 else (),
            )
        m = _abnf.via_re.fullmatch(text)
        if not m:
            raise ParseError(f"Via: malformed value {text.strip()!r}", header="Via")
        name, version, transport, host, port, params = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise ParseError(f"Via: unsupported protocol {name}/{version}", header="Via")
        return Via(
            transport.upper(),
            host,
            _int_in_range(port, "Via", 65535) if port else None,
            parse_header_params(params.rstrip(_WS), "Via") if params else (),
        )

    def param(self, name: str) -> str | None:
        return get_header_param(self.params, name)

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in; None when absent or asked for (a flag)."""
        value = self.param("rport")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def wants_rport(self) -> bool:
        return self.param("rport") is not None

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.param("ttl")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int]:
        """(host, port) with the transport's default port filled in (RFC 3261 section 18.2.2)."""
        default = 5061 if self.transport == "TLS" else 5060
        return self.host.lower(), self.port if self.port is not None else default

    @property
    def has_magic_cookie(self) -> bool:
        """True for an RFC 3261 branch; False for an RFC 2543 peer (section 17.2.3)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK")

    def with_param(self, name: str, value: str | None) -> Via:
        # every field by hand: dataclasses.replace is generic, and slow on the hot path
        params = set_header_param(self.params, name, value)
        return Via(self.transport, self.host, self.port, params, self.protocol)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return (
            f"{self.protocol}/{self.transport} {self.host}{port}{format_header_params(self.params)}"
        )


@dataclass(frozen=True, slots=True, init=False)
class NameAddr:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route.

    ``display_name`` is unquoted; None when absent. A Contact of ``*`` has ``wildcard``.
    """

    uri: Uri | None
    display_name: str | None
    params: Params
    wildcard: bool

    def __init__(
        self,
        uri: Uri | None,
        display_name: str | None = None,
        params: Params = (),
        wildcard: bool = False,
    ) -> None:
        # written out, as Via's is
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "display_name", display_name)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "wildcard", wildcard)

    @classmethod
    def parse(cls, text: str, what: str = "name-addr") -> NameAddr:
        found = _name_addrs.get(text)
        if found is not None:
            return found
        return remembered(_name_addrs, text, cls._parse(text, what))

    @classmethod
    def _parse(cls, text: str, what: str) -> NameAddr:
        stripped = text.strip(_WS)
        if stripped.startswith("<"):  # no display name, the usual shape: no regex
            gt = stripped.find(">")
            uri_text = stripped[1:gt]
            rest = stripped[gt + 1 :]
            if (
                gt > 1
                and (not rest or rest.startswith(";"))
                and "<" not in uri_text
                and " " not in uri_text
                and "\t" not in uri_text
                and '"' not in uri_text
            ):
                return NameAddr(
                    parse_uri(uri_text, what=what),
                    None,
                    parse_header_params(rest, what) if rest else (),
                )
        m = _simple_name_addr_re.fullmatch(stripped)
        if m is not None:
            quoted, words, uri_text, params = m.groups()
            if quoted is not None:
                display: str | None = _unescape(quoted) if "\\" in quoted else quoted
            else:
                display = " ".join(words.split()) or None
            return NameAddr(
                parse_uri(uri_text, what=what),
                display,
                parse_header_params(params.rstrip(_WS), what) if params else (),
            )
        text = text.strip(_WS)
        if text == "*":
            return NameAddr(None, wildcard=True)
        display = None
        if text.startswith('"'):
            display, i = read_quoted(text, 0, what)
            rest = text[i:].lstrip(_WS)
            if not rest.startswith("<"):
                raise ParseError(f"{what}: expected '<' after display name", header=what)
            return cls._bracketed(rest, display, what)
        lt = text.find("<")
        if lt >= 0:
            # display-name = *(token LWS); it must be tokens only (RFC 4475 baddn)
            words = text[:lt].split()
            if any(not _abnf.token_re.fullmatch(w) for w in words):
                raise ParseError(f"{what}: display name must be quoted", header=what)
            display = " ".join(words) if words else None
            return cls._bracketed(text[lt:], display, what)
        # addr-spec: the URI ends at the first ';', which starts header parameters.
        # A URI with ',', ';' or '?' must be in angle brackets (RFC 3261 section 20).
        uri_text, semi, param_text = text.partition(";")
        uri_text = uri_text.rstrip(_WS)
        if "?" in uri_text or any(c in uri_text for c in _WS):
            raise ParseError(f"{what}: URI with '?' or spaces must be in '<>'", header=what)
        uri = parse_uri(uri_text, what=what)
        params = parse_header_params(";" + param_text, what) if semi else ()
        return NameAddr(uri, None, params)

    @classmethod
    def _bracketed(cls, text: str, display: str | None, what: str) -> NameAddr:
        gt = text.find(">")
        if gt < 0:
            raise ParseError(f"{what}: missing '>'", header=what)
        uri_text = text[1:gt]
        if uri_text != uri_text.strip(_WS):
            raise ParseError(f"{what}: white space inside '<>'", header=what)
        uri = parse_uri(uri_text, what=what)
        rest = text[gt + 1 :].strip(_WS)
        params = parse_header_params(rest, what) if rest else ()
        return NameAddr(uri, display, params)

    def param(self, name: str) -> str | None:
        return get_header_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def sip_uri(self) -> SipUri | None:
        return self.uri if isinstance(self.uri, SipUri) else None

    @property
    def expires(self) -> int | None:
        """The Contact expires parameter, capped at 2**32-1 (RFC 3261 section 10.2.1.1)."""
        value = self.param("expires")
        if value is None or not (value.isascii() and value.isdigit()):
            return None
        return min(int(value), 2**32 - 1)

    @property
    def q(self) -> float | None:
        value = self.param("q")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def with_param(self, name: str, value: str | None) -> NameAddr:
        params = set_header_param(self.params, name, value)
        return NameAddr(self.uri, self.display_name, params, self.wildcard)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        params = format_header_params(self.params)
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{escaped}" <{self.uri}>{params}'
        return f"<{self.uri}>{params}"


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq = 1*DIGIT LWS Method; the number is below 2**31 (RFC 3261 section 8.1.1.5)."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        found = _cseqs.get(text)
        if found is not None:
            return found
        parts = text.split()
        if len(parts) != 2 or not _abnf.token_re.fullmatch(parts[1]):
            raise ParseError(f"CSeq: malformed value {text.strip()!r}", header="CSeq")
        return remembered(_cseqs, text, CSeq(_int_in_range(parts[0], "CSeq", 2**31 - 1), parts[1]))

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


# what texts parsed to lately (uri.remembered): a value that failed is never kept
_vias: Final[dict[str, Via]] = {}
_sent_bys: Final[dict[str, tuple[str, str, int | None]]] = {}
_name_addrs: Final[dict[str, NameAddr]] = {}
_cseqs: Final[dict[str, CSeq]] = {}


def parse_max_forwards(text: str) -> int:
    """Max-Forwards = 1*DIGIT, 0 to 255 (RFC 3261 section 20.22)."""
    return _int_in_range(text.strip(_WS), "Max-Forwards", 255)


def parse_content_length(text: str) -> int:
    return _int_in_range(text.strip(_WS), "Content-Length", 2**31 - 1)


def parse_delta_seconds(text: str, what: str = "Expires") -> int:
    """delta-seconds, capped at 2**32-1 as RFC 3261 section 10.2.1.1 says."""
    text = text.strip(_WS)
    if not (text.isascii() and text.isdigit()):
        raise ParseError(f"{what}: not a number: {text!r}", header=what)
    return min(int(text), 2**32 - 1)


def parse_tokens(text: str, what: str) -> tuple[str, ...]:
    """A comma-separated list of option tags or methods (Supported, Require, Allow)."""
    tokens = tuple(t.strip(_WS) for t in text.split(",") if t.strip(_WS))
    for t in tokens:
        if not _abnf.token_re.fullmatch(t):
            raise ParseError(f"{what}: malformed token {t!r}", header=what)
    return tokens
