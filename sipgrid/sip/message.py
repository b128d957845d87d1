"""SIP requests and responses (RFC 3261 section 7).

A message keeps its header fields as parsed: canonical name, the name as written,
the unfolded value, and the original line. Unchanged fields serialize byte-exact, so
a proxy forwards what it does not understand as it received it. Typed values (Via,
From, CSeq...) are parsed on first read and cached until a header changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Self, TypeVar, cast

from . import _abnf
from .digest import Challenge, Credentials
from .errors import LocalProtocolError, ParseError
from .headers import (
    CSeq,
    NameAddr,
    Via,
    parse_content_length,
    parse_delta_seconds,
    parse_max_forwards,
    parse_tokens,
    split_commas,
)
from .uri import Uri

# RFC 3261 section 7.3.3 and the IANA registry: compact forms.
COMPACT_FORMS: Final = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# How sipgrid spells a header it writes; other names are title-cased.
_SPELLING: Final = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

# The cached typed values a change of a header invalidates (others are cached by header name).
_CACHE_KEYS: Final = {
    "via": ("vias", "top_via"),
    "call-id": ("call_id",),
    "max-forwards": ("max_forwards",),
    "content-length": ("content_length",),
}
# by header key: its _CACHE_KEYS entries and its "tokens:" entry, made once per key
_stale: Final[dict[str, tuple[str, ...]]] = {}


def _stale_on_change(key: str) -> tuple[str, ...]:
    found = _stale.get(key)
    if found is None:
        found = (*_CACHE_KEYS.get(key, (key,)), "tokens:" + key)
        if len(_stale) < 1024:
            _stale[key] = found
    return found


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name: 'v' and 'VIA' both give 'via'."""
    key = _canonical.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_canonical) < 1024:
            _canonical[name] = key
    return key


_canonical: Final[dict[str, str]] = {}


def display_name(key: str) -> str:
    """The conventional spelling of a canonical header name (each spelt once: the typed
    headers' parsers are given it with every value, for their error messages)."""
    name = _SPELLING.get(key) or _displayed.get(key)
    if name is None:
        name = "-".join([p.capitalize() for p in key.split("-")])
        if len(_displayed) < 1024:
            _displayed[key] = name
    return name


_displayed: Final[dict[str, str]] = {}


class HeaderField:
    """One header line: canonical ``key``, ``name`` as written, unfolded ``value``, original ``raw`` line."""

    __slots__ = ("key", "name", "raw", "value")

    def __init__(self, key: str, name: str, value: str, raw: str | None = None) -> None:
        self.key = key
        self.name = name
        self.value = value
        self.raw = raw

    def line(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"

    def __repr__(self) -> str:
        return f"HeaderField({self.name!r}, {self.value!r})"


T = TypeVar("T")
_MISSING: Final = object()


def _first_via(value: str) -> Via:
    first = split_commas(value)[0] if "," in value else value
    if not first.strip(" \t"):
        raise ParseError("Via: empty value", header="Via")
    return Via.parse(first)


def _more_than_one(key: str) -> ParseError:
    return ParseError(f"{display_name(key)}: more than one header", header=display_name(key))


def _call_id(value: str) -> str:
    # callid = word [ "@" word ]; read leniently: anything but white space
    if not value or " " in value or "\t" in value:
        raise ParseError("Call-ID: empty or contains white space", header="Call-ID")
    return value


class Message:
    """What requests and responses share: header fields, body, serialization."""

    __slots__ = ("_cache", "_raw", "body", "fields")

    def __init__(self, fields: Iterable[HeaderField] = (), body: bytes = b"") -> None:
        self.fields: list[HeaderField] = list(fields)
        self.body = body
        self._raw: bytes | None = None
        self._cache: dict[str, Any] = {}

    # -- the start line, defined by subclasses

    def start_line(self) -> str:
        raise NotImplementedError

    # -- raw header access

    def get(self, name: str) -> str | None:
        """The value of the first field of that name, or None."""
        key = canonical_name(name)
        for f in self.fields:
            if f.key == key:
                return f.value
        return None

    def get_all(self, name: str) -> list[str]:
        """The values of every field of that name, one per line as received."""
        key = canonical_name(name)
        return [f.value for f in self.fields if f.key == key]

    def values(self, name: str) -> list[str]:
        """Every comma-separated value of that header across all its lines."""
        out: list[str] = []
        key = canonical_name(name)
        for f in self.fields:
            if f.key == key:
                out.extend(v.strip(" \t") for v in split_commas(f.value))
        return out

    def __contains__(self, name: object) -> bool:
        # a loop: mypyc makes a list of an any(...) over a generator (no early end), and
        # that put the name into canonical form once a field (1,700 instructions a test)
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        for f in self.fields:  # noqa: SIM110 (above)
            if f.key == key:
                return True
        return False

    def headers(self) -> list[tuple[str, str]]:
        """(name as written, value) pairs in order: a list, which mypyc made of the
        generator expression that was here, so that compiled and interpreted agree."""
        return [(f.name, f.value) for f in self.fields]

    # -- changes

    def _changed(self, key: str | None = None) -> None:
        """Forget the bytes, and the typed values that the change of header ``key`` touches."""
        self._raw = None
        cache = self._cache
        if key is None:
            cache.clear()
            return
        # `in` and `del`, not pop(name, None): compiled, those two are C calls, pop a
        # Python method call
        for name in _stale_on_change(key):
            if name in cache:
                del cache[name]

    def add(self, name: str, value: object, *, first: bool = False) -> None:
        """Add a header line; ``first`` puts it before the other lines of the same name
        (or at the top when there are none)."""
        key = canonical_name(name)
        field = HeaderField(key, display_name(key) if name.islower() else name, str(value))
        if first:
            self.fields.insert(self._first_index(key), field)
        else:
            self.fields.append(field)
        self._changed(key)

    def _first_index(self, key: str) -> int:
        """Where the first line of ``key`` is, else 0 (a loop: mypyc makes a generator
        object of a generator expression)."""
        for index, f in enumerate(self.fields):
            if f.key == key:
                return index
        return 0

    def set(self, name: str, value: object) -> None:
        """Replace every line of that name with one, where the first one was."""
        key = canonical_name(name)
        index = next((i for i, f in enumerate(self.fields) if f.key == key), len(self.fields))
        self.remove(name)
        self.fields.insert(
            index, HeaderField(key, display_name(key) if name.islower() else name, str(value))
        )
        self._changed(key)

    def remove(self, name: str) -> int:
        """Remove every line of that name; return how many there were."""
        key = canonical_name(name)
        before = len(self.fields)
        self.fields = [f for f in self.fields if f.key != key]
        self._changed(key)
        return before - len(self.fields)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first comma-separated value of a header (the top Via, Route...)."""
        key = canonical_name(name)
        for index, f in enumerate(self.fields):
            if f.key != key:
                continue
            parts = split_commas(f.value)
            if len(parts) == 1:
                del self.fields[index]
            else:
                self.fields[index] = HeaderField(key, f.name, ",".join(parts[1:]).strip(" \t"))
            self._changed(key)
            return parts[0].strip(" \t")
        return None

    def push_via(self, via: Via) -> None:
        """Put ``via`` above the other Via values (a proxy's own, RFC 3261 section 16.6
        step 8), kept parsed: the client transaction's key reads it at once."""
        self.fields.insert(self._first_index("via"), HeaderField("via", "Via", str(via)))
        self._changed("via")
        self._cache["top_via"] = via

    def set_top_via(self, via: Via, suffix: str | None = None) -> None:
        """Replace the topmost Via value (to add received and rport, RFC 3581).

        ``suffix``: ``via`` is the old value with parameters added at its end, written
        as this text after the old one (nothing else of it is written again), or None
        when its parameters changed in place (the value is then written from ``via``)."""
        for index, f in enumerate(self.fields):
            if f.key == "via":
                line = f.raw
                # the line as received, one Via in it: the suffix goes at its end
                if (
                    suffix is not None
                    and line is not None
                    and "," not in f.value
                    and line.endswith(f.value)
                ):
                    self.fields[index] = HeaderField("via", f.name, f.value + suffix, line + suffix)
                    self._changed("via")
                    self._cache["top_via"] = via
                    return
                parts = split_commas(f.value) if "," in f.value else [f.value]
                if suffix is None:
                    parts[0] = str(via)
                else:  # split_commas keeps the blanks before a comma
                    parts[0] = parts[0].rstrip(" \t") + suffix
                self.fields[index] = HeaderField("via", f.name, ",".join(parts))
                self._changed("via")
                self._cache["top_via"] = via
                return
        raise LocalProtocolError("the message has no Via to replace")

    def copy(self) -> Self:
        """A copy whose header changes do not touch this message (fields are shared, immutable)."""
        clone = self._blank()
        clone.fields = list(self.fields)
        clone.body = self.body
        clone._raw = self._raw
        clone._cache = dict(self._cache)
        return clone

    def _blank(self) -> Self:
        """A message of this kind with this start line and nothing else."""
        raise NotImplementedError

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        self.set("content-length", len(body))
        if content_type is not None:
            self.set("content-type", content_type)

    # -- typed access, parsed once and cached

    def _typed(self, name: str, parse: Callable[[], T]) -> T:
        # get, not try/except KeyError: compiled, each miss (the first read of a header)
        # raised, caught and tracebacked a KeyError, some 5,000 instructions
        cached = self._cache.get(name, _MISSING)
        if cached is not _MISSING:
            return cast(T, cached)
        value = self._cache[name] = parse()
        return value

    def _single(self, key: str) -> str | None:
        found = None
        for f in self.fields:
            if f.key == key:
                if found is not None:
                    raise ParseError(
                        f"{display_name(key)}: more than one header", header=display_name(key)
                    )
                found = f.value
        return found

    def _required(self, key: str) -> str:
        value = self._single(key)
        if value is None:
            raise ParseError(f"missing {display_name(key)} header", header=display_name(key))
        return value

    @property
    def vias(self) -> list[Via]:
        return self._typed("vias", lambda: [Via.parse(v) for v in self.values("via")])

    @property
    def top_via(self) -> Via:
        cached = self._cache.get("top_via", _MISSING)
        if cached is not _MISSING:
            return cast("Via", cached)

        def parse() -> Via:
            value = self.get("via")
            if value is None:
                raise ParseError("missing Via header", header="Via")
            return _first_via(value)

        return self._typed("top_via", parse)

    @property
    def from_(self) -> NameAddr:
        cached = self._cache.get("from", _MISSING)
        if cached is not _MISSING:
            return cast("NameAddr", cached)
        return self._typed("from", lambda: NameAddr.parse(self._required("from"), "From"))

    @property
    def to(self) -> NameAddr:
        cached = self._cache.get("to", _MISSING)
        if cached is not _MISSING:
            return cast("NameAddr", cached)
        return self._typed("to", lambda: NameAddr.parse(self._required("to"), "To"))

    @property
    def call_id(self) -> str:
        cached = self._cache.get("call_id", _MISSING)
        if cached is not _MISSING:
            return cast("str", cached)
        return self._typed("call_id", lambda: _call_id(self._required("call-id")))

    @property
    def cseq(self) -> CSeq:
        cached = self._cache.get("cseq", _MISSING)
        if cached is not _MISSING:
            return cast("CSeq", cached)
        return self._typed("cseq", lambda: CSeq.parse(self._required("cseq")))

    @property
    def max_forwards(self) -> int | None:
        cached = self._cache.get("max_forwards", _MISSING)
        if cached is not _MISSING:
            return cast("int | None", cached)

        def parse() -> int | None:
            value = self._single("max-forwards")
            return None if value is None else parse_max_forwards(value)

        return self._typed("max_forwards", parse)

    @property
    def content_length(self) -> int | None:
        cached = self._cache.get("content_length", _MISSING)
        if cached is not _MISSING:
            return cast("int | None", cached)

        def parse() -> int | None:
            value = self._single("content-length")
            return None if value is None else parse_content_length(value)

        return self._typed("content_length", parse)

    @property
    def content_type(self) -> str | None:
        value = self.get("content-type")
        return value.split(";")[0].strip(" \t").lower() if value else None

    def _name_addrs(self, key: str) -> list[NameAddr]:
        return self._typed(
            key, lambda: [NameAddr.parse(v, display_name(key)) for v in self.values(key)]
        )

    @property
    def routes(self) -> list[NameAddr]:
        cached = self._cache.get("route", _MISSING)
        if cached is not _MISSING:
            return cast("list[NameAddr]", cached)
        return self._name_addrs("route")

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._name_addrs("record-route")

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value; one wildcard ``*`` Contact must stand alone (RFC 3261 section 10.2.2)."""

        cached = self._cache.get("contact", _MISSING)
        if cached is not _MISSING:
            return cast("list[NameAddr]", cached)

        def parse() -> list[NameAddr]:
            contacts = [NameAddr.parse(v, "Contact") for v in self.values("contact")]
            if len(contacts) > 1 and any(c.wildcard for c in contacts):
                raise ParseError("Contact: '*' must be the only Contact", header="Contact")
            return contacts

        return self._typed("contact", parse)

    @property
    def expires(self) -> int | None:
        def parse() -> int | None:
            value = self.get("expires")
            return None if value is None else parse_delta_seconds(value)

        return self._typed("expires", parse)

    def tokens(self, name: str) -> tuple[str, ...]:
        """Option tags or methods of Supported, Require, Proxy-Require, Unsupported, Allow."""
        key = canonical_name(name)
        return self._typed(
            "tokens:" + key,
            lambda: tuple(t for v in self.get_all(key) for t in parse_tokens(v, display_name(key))),
        )

    @property
    def authorizations(self) -> list[Credentials]:
        return self._typed(
            "authorization",
            lambda: [Credentials.parse(v, "Authorization") for v in self.get_all("authorization")],
        )

    @property
    def proxy_authorizations(self) -> list[Credentials]:
        return self._typed(
            "proxy-authorization",
            lambda: [
                Credentials.parse(v, "Proxy-Authorization")
                for v in self.get_all("proxy-authorization")
            ],
        )

    @property
    def www_authenticates(self) -> list[Challenge]:
        return self._typed(
            "www-authenticate",
            lambda: [
                Challenge.parse(v, "WWW-Authenticate") for v in self.get_all("www-authenticate")
            ],
        )

    @property
    def proxy_authenticates(self) -> list[Challenge]:
        return self._typed(
            "proxy-authenticate",
            lambda: [
                Challenge.parse(v, "Proxy-Authenticate") for v in self.get_all("proxy-authenticate")
            ],
        )

    # -- checks and output

    def validate(self) -> None:
        """Parse every header a proxy routes on; raise ParseError on the first fault.

        One pass finds them all, and the parsed values fill the cache the properties read.
        """
        # From, To, Call-ID, CSeq, Max-Forwards and Content-Length may appear once only
        # (RFC 3261 section 7.3.1); a proxy routes on them. Each is a local, not a dict's
        # entry: compiled, comparing a key with a literal is a few instructions where a
        # dict's store is some two hundred (session 34)
        via: str | None = None
        from_: str | None = None
        to: str | None = None
        call_id: str | None = None
        cseq: str | None = None
        mf: str | None = None
        cl: str | None = None
        routes = False
        for f in self.fields:
            key = f.key
            if key == "via":
                if via is None:
                    via = f.value
            elif key == "from":
                if from_ is not None:
                    raise _more_than_one(key)
                from_ = f.value
            elif key == "to":
                if to is not None:
                    raise _more_than_one(key)
                to = f.value
            elif key == "call-id":
                if call_id is not None:
                    raise _more_than_one(key)
                call_id = f.value
            elif key == "cseq":
                if cseq is not None:
                    raise _more_than_one(key)
                cseq = f.value
            elif key == "max-forwards":
                if mf is not None:
                    raise _more_than_one(key)
                mf = f.value
            elif key == "content-length":
                if cl is not None:
                    raise _more_than_one(key)
                cl = f.value
            elif key == "route":
                routes = True
        if via is None:
            raise ParseError("missing Via header", header="Via")
        if from_ is None:
            raise ParseError("missing From header", header="From")
        if to is None:
            raise ParseError("missing To header", header="To")
        if call_id is None:
            raise ParseError("missing Call-ID header", header="Call-ID")
        if cseq is None:
            raise ParseError("missing CSeq header", header="CSeq")
        cache = self._cache
        cache["top_via"] = _first_via(via)
        cache["from"] = NameAddr.parse(from_, "From")
        cache["to"] = NameAddr.parse(to, "To")
        cache["call_id"] = _call_id(call_id)
        cache["cseq"] = CSeq.parse(cseq)
        cache["max_forwards"] = None if mf is None else parse_max_forwards(mf)
        cache["content_length"] = None if cl is None else parse_content_length(cl)
        if routes:
            self.routes  # noqa: B018
        else:
            cache["route"] = []

    def serialize(self) -> bytes:
        """The message as bytes: the original bytes while nothing has changed."""
        if self._raw is not None:
            return self._raw
        lines = [self.start_line()]
        lines.extend(f.line() for f in self.fields)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def _key(self) -> tuple[object, ...]:
        return (self.start_line(), [(f.key, f.value) for f in self.fields], self.body)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Message) and type(other) is type(self) and self._key() == other._key()
        )

    __hash__ = None  # type: ignore[assignment]


class Request(Message):
    """A SIP request. ``uri`` is the parsed Request-URI."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri, fields: Iterable[HeaderField] = (), body: bytes = b""
    ) -> None:
        if method not in _abnf.KNOWN_METHODS and not _abnf.token_re.fullmatch(method):
            raise LocalProtocolError(f"not a SIP method: {method!r}")
        super().__init__(fields, body)
        self.method = method
        self.uri = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def _blank(self) -> Self:
        return type(self)(self.method, self.uri)

    def set_uri(self, uri: Uri) -> None:
        self.uri = uri
        self._raw = None

    def validate(self) -> None:
        super().validate()
        if self.cseq.method != self.method:
            raise ParseError("CSeq method does not match the request method", header="CSeq")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str = "", fields: Iterable[HeaderField] = (), body: bytes = b""
    ) -> None:
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status code out of range: {status}")
        super().__init__(fields, body)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def _blank(self) -> Self:
        return type(self)(self.status, self.reason)

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
