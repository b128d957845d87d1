"""SIP, SIPS, tel and other URIs (RFC 3261 section 19.1, RFC 3966).

``parse_uri`` returns a :class:`SipUri` for sip: and sips:, a :class:`TelUri` for
tel:, and an :class:`AbsoluteUri` that keeps the text opaque for every other scheme.
``str()`` gives the URI back as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, TypeVar

from . import _abnf, _fast
from .errors import ParseError

Params = tuple[tuple[str, str | None], ...]
V = TypeVar("V")

# Texts parsed lately, with what they gave, for values that cannot change (frozen, with
# tuples for parameters): the messages of one call repeat their From, To, CSeq, Contact
# and Request-URI, and a transaction's responses its Via. Emptied when full.
MEMO_SIZE: Final = 2048


def remembered(memo: dict[str, V], text: str, value: V) -> V:
    """Keep ``value`` as what ``text`` parses to, and return it."""
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[text] = value
    return value


DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "sctp": 5060, "ws": 80, "tls": 5061, "wss": 443}


def parse_params(text: str, *, what: str) -> Params:
    """Parse ``;name=value;flag`` URI parameters (text starts after the first ';')."""
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not _abnf.uri_param_re.fullmatch(name) or (
            eq and not _abnf.uri_param_re.fullmatch(value)
        ):
            raise ParseError(f"{what}: malformed URI parameter {item!r}", header=what)
        params.append((name, value if eq else None))
    return tuple(params)


def format_params(params: Params) -> str:
    parts: list[str] = []  # a loop: mypyc makes a generator object of a genexpr
    for n, v in params:
        parts.append(f";{n}" if v is None else f";{n}={v}")
    return "".join(parts)


def get_param(params: Params, name: str) -> str | None:
    """The value of a parameter (case-insensitive name); "" for a flag; None if absent.

    ``name`` is ASCII (a token): a parameter's name of another length cannot lower to
    its lower case (lower() never shortens a text, and the one letter it lengthens, U+0130,
    lowers to a text that is not ASCII), so only names of its length are lowered, and a
    name spelled as asked is taken without (each lower() makes a new str)."""
    lname = ""
    for n, v in params:
        if n != name:
            if len(n) != len(name):
                continue
            if not lname:
                lname = name.lower()
            if n.lower() != lname:
                continue
        return "" if v is None else v
    return None


@dataclass(frozen=True, slots=True, init=False)
class SipUri:
    """sip: or sips: URI. ``host`` keeps IPv6 brackets; ``headers`` is the raw text after '?'."""

    scheme: str
    host: str
    user: str | None
    password: str | None
    port: int | None
    params: Params
    headers: str | None
    # str() of the URI, made at its first use: the value is frozen, and memos share it
    # among messages (a call's routing wrote its Request-URI out three times a request)
    _text: str | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(
        self,
        scheme: str,
        host: str,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        params: Params = (),
        headers: str | None = None,
    ) -> None:
        # written out: mypyc compiles this one (headers.Via says why)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "_text", None)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        return self.param("lr") is not None

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def user_param(self) -> str | None:
        return self.param("user")

    @property
    def method(self) -> str | None:
        return self.param("method")

    @property
    def ttl(self) -> int | None:
        value = self.param("ttl")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """The address of record: scheme, user and host, no port or parameters."""
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def with_params(self, **changes: str | None) -> SipUri:
        """A copy with parameters set (a value), set as a flag (""), or removed (None)."""
        params = [(n, v) for n, v in self.params if n.lower() not in changes]
        for name, value in changes.items():
            if value is not None:
                params.append((name, value or None))
        return SipUri(
            self.scheme, self.host, self.user, self.password, self.port, tuple(params), self.headers
        )

    def __str__(self) -> str:
        text = self._text
        if text is not None:
            return text
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers is not None else ""
        text = f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"
        object.__setattr__(self, "_text", text)
        return text


@dataclass(frozen=True, slots=True)
class TelUri:
    """tel: URI (RFC 3966): the number and its parameters, kept as written."""

    number: str
    params: Params = ()

    scheme = "tel"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other scheme (http:, urn:, isbn:...), kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str, *, what: str = "URI") -> Uri:
    """Parse a URI; ``what`` names the place it came from in error reasons."""
    found = _uris.get(text)
    if found is not None:
        return found
    return remembered(_uris, text, _parse_uri(text, what))


_uris: Final[dict[str, Uri]] = {}


def _parse_uri(text: str, what: str) -> Uri:
    scheme, colon, rest = text.partition(":")
    if not colon or not _abnf.scheme_re.fullmatch(scheme) or not rest:
        raise ParseError(f"{what}: malformed URI {text!r}", header=what)
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip_uri(lscheme, rest, text, what)
    if any(c in rest for c in ' \t\r\n<>"'):
        raise ParseError(f"{what}: malformed URI {text!r}", header=what)
    if lscheme == "tel":
        number, _, params = rest.partition(";")
        return TelUri(number, parse_params(params, what=what) if params else ())
    return AbsoluteUri(scheme, rest)


def _parse_sip_uri(scheme: str, rest: str, text: str, what: str) -> SipUri:
    found = _fast.sip_uri(rest)  # the common shape (sipgrid/sip/_fast.py)
    if found is not None:
        user, password, host, port, params, headers = found
        return SipUri(scheme, host, user, password, port, params, headers)
    return _parse_sip_uri_carefully(scheme, rest, text, what)


def _parse_sip_uri_carefully(scheme: str, rest: str, text: str, what: str) -> SipUri:
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    # No unescaped "@" may follow the userinfo, so the first "@" ends it.
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _abnf.user_re.fullmatch(user) or (colon and not _abnf.password_re.fullmatch(pw)):
            raise ParseError(f"{what}: malformed user part in {text!r}", header=what)
        password = pw if colon else None
    headers = None
    q = rest.find("?")
    if q >= 0:
        rest, headers = rest[:q], rest[q + 1 :]
        if not _abnf.uri_headers_re.fullmatch(headers):
            raise ParseError(f"{what}: malformed URI headers in {text!r}", header=what)
    hostport, semi, param_text = rest.partition(";")
    host, port = _split_hostport(hostport, text, what)
    params = parse_params(param_text, what=what) if semi else ()
    return SipUri(scheme, host, user, password, port, params, headers)


def _split_hostport(hostport: str, text: str, what: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, port_text = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (port_text and not port_text.startswith(":")):
            raise ParseError(f"{what}: malformed IPv6 reference in {text!r}", header=what)
        port_text = port_text[1:] if port_text else ""
        has_port = bool(hostport[end + 1 :])
    else:
        host, colon, port_text = hostport.partition(":")
        has_port = bool(colon)
    if not _abnf.host_re.fullmatch(host):
        raise ParseError(f"{what}: malformed host in {text!r}", header=what)
    if not has_port:
        return host, None
    if (
        not (port_text.isascii() and port_text.isdigit())
        or len(port_text) > 5
        or int(port_text) > 65535
    ):
        raise ParseError(f"{what}: malformed port in {text!r}", header=what)
    return host, int(port_text)
