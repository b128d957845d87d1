"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).

Both sides: a server builds a :class:`Challenge` and verifies :class:`Credentials`;
a client answers a challenge (for trunk registrations). Algorithms MD5, SHA-256 and
SHA-512-256 with their -sess variants; qop "auth" or none (auth-int is refused).

Nonces are stateless and signed: ``make_nonce`` packs the issue time and a MAC, so
every instance sharing the key can check expiry without shared state. Replay by
nonce-count needs state and is the caller's: :func:`check_nonce` says whether the
nonce is fresh, stale or forged; the caller keeps the highest nc seen per nonce.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import importlib
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from . import _abnf, _fast
from .errors import LocalProtocolError, ParseError

if TYPE_CHECKING:
    from .message import Request, Response
from .headers import read_quoted, split_commas


def _builtin_md5() -> Callable[[bytes], Any]:
    """CPython's own MD5, what hashlib falls back on without OpenSSL: on a short text it
    took 2,900 instructions against OpenSSL 3's 5,100 through hashlib.md5 (callgrind,
    session 26), and checking a digest answer hashes three texts."""
    try:
        return cast("Callable[[bytes], Any]", importlib.import_module("_md5").md5)
    except (ImportError, AttributeError):  # another interpreter
        return hashlib.md5


_md5: Final = _builtin_md5()
_HASHES: Final[dict[str, Callable[[bytes], Any]]] = {
    "MD5": _md5,  # the constructors themselves: hashlib.new is Python
    "SHA-256": hashlib.sha256,
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data),
}


def _hash(algorithm: str, text: str) -> str:
    if algorithm == "MD5":
        md5: str = _md5(text.encode("utf-8")).hexdigest()
        return md5
    base = algorithm.upper().removesuffix("-SESS")
    try:
        new = _HASHES[base]
    except KeyError:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}") from None
    hexdigest: str = new(text.encode("utf-8")).hexdigest()
    return hexdigest


def supported(algorithm: str) -> bool:
    return algorithm.upper().removesuffix("-SESS") in _HASHES


def _parse_params(text: str, what: str) -> tuple[str, dict[str, str]]:
    """``scheme LWS auth-param *(COMMA auth-param)``; names lower-cased, values unquoted."""
    text = text.strip(" \t")
    scheme, _, rest = text.partition(" ")
    if not _abnf.token_re.fullmatch(scheme):
        raise ParseError(f"{what}: malformed scheme", header=what)
    params = _fast.digest_params(rest)  # the usual shape
    return scheme, params if params is not None else _read_params_carefully(rest, what)


# auth-param = auth-param-name EQUAL ( token / quoted-string ), then COMMA or the end
# (RFC 7616 section 3.4; RFC 3261 section 25.1). _fast.digest_params reads them as every
# client writes them, or gives None; then the careful reading takes them one by one and
# says what is wrong. A REGISTER's Authorization took 92,000 instructions by two regular
# expressions (session 13), 28,000 by str.find in compiled Python, 6,400 in C (callgrind,
# session 34).
def _read_params_carefully(rest: str, what: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in split_commas(rest):
        item = item.strip(" \t")
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if not eq or not _abnf.token_re.fullmatch(name):
            raise ParseError(f"{what}: malformed parameter {item!r}", header=what)
        if value.startswith('"'):
            unquoted, end = read_quoted(value, 0, what)
            if value[end:].strip(" \t"):
                raise ParseError(f"{what}: text after quoted value of {name}", header=what)
            value = unquoted
        params[name] = value
    return params


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


@dataclass(frozen=True, slots=True, init=False)
class Challenge:
    """A WWW-Authenticate or Proxy-Authenticate value."""

    realm: str
    nonce: str
    algorithm: str
    qop: tuple[str, ...]
    opaque: str | None
    stale: bool
    domain: str | None
    scheme: str

    def __init__(
        self,
        realm: str,
        nonce: str,
        algorithm: str = "MD5",
        qop: tuple[str, ...] = ("auth",),
        opaque: str | None = None,
        stale: bool = False,
        domain: str | None = None,
        scheme: str = "Digest",
    ) -> None:
        # written out, as Credentials's is
        object.__setattr__(self, "realm", realm)
        object.__setattr__(self, "nonce", nonce)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "qop", qop)
        object.__setattr__(self, "opaque", opaque)
        object.__setattr__(self, "stale", stale)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "scheme", scheme)

    @classmethod
    def parse(cls, text: str, what: str = "WWW-Authenticate") -> Challenge:
        scheme, p = _parse_params(text, what)
        if scheme.lower() != "digest":
            return cls(realm=p.get("realm", ""), nonce=p.get("nonce", ""), scheme=scheme)
        if "realm" not in p or "nonce" not in p:
            raise ParseError(f"{what}: realm and nonce are required", header=what)
        qop = tuple(q.strip(" \t") for q in p["qop"].split(",")) if "qop" in p else ()
        return cls(
            realm=p["realm"],
            nonce=p["nonce"],
            algorithm=p.get("algorithm", "MD5"),
            qop=qop,
            opaque=p.get("opaque"),
            stale=p.get("stale", "").lower() == "true",
            domain=p.get("domain"),
            scheme="Digest",
        )

    def __str__(self) -> str:
        text = (
            f"{self.scheme} realm={_quote(self.realm)}, nonce={_quote(self.nonce)}, "
            f"algorithm={self.algorithm}"
        )
        if self.qop:
            text += f', qop="{",".join(self.qop)}"'
        if self.opaque is not None:
            text += f", opaque={_quote(self.opaque)}"
        if self.domain is not None:
            text += f", domain={_quote(self.domain)}"
        if self.stale:
            text += ", stale=true"
        return text


@dataclass(frozen=True, slots=True, init=False)
class Credentials:
    """An Authorization or Proxy-Authorization value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None
    scheme: str
    extra: dict[str, str] = field(compare=False)

    def __init__(
        self,
        username: str,
        realm: str,
        nonce: str,
        uri: str,
        response: str,
        algorithm: str = "MD5",
        qop: str | None = None,
        nc: str | None = None,
        cnonce: str | None = None,
        opaque: str | None = None,
        scheme: str = "Digest",
        extra: dict[str, str] | None = None,
    ) -> None:
        """Written out: compiled, this is a fifth of what the __init__ that dataclass
        generates costs (mypyc leaves that one to the interpreter), and a REGISTER or an
        INVITE makes one of these."""
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "realm", realm)
        object.__setattr__(self, "nonce", nonce)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "qop", qop)
        object.__setattr__(self, "nc", nc)
        object.__setattr__(self, "cnonce", cnonce)
        object.__setattr__(self, "opaque", opaque)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "extra", {} if extra is None else extra)

    @classmethod
    def parse(cls, text: str, what: str = "Authorization") -> Credentials:
        scheme, p = _parse_params(text, what)
        if scheme.lower() != "digest":
            return Credentials("", p.get("realm", ""), "", "", "", scheme=scheme, extra=p)
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            raise ParseError(f"{what}: missing {', '.join(missing)}", header=what)
        qop = p.get("qop")
        if qop is not None and ("nc" not in p or "cnonce" not in p):
            raise ParseError(f"{what}: qop needs nc and cnonce", header=what)
        nc = p.get("nc")
        if nc is not None and not (len(nc) == 8 and all(c in "0123456789abcdefABCDEF" for c in nc)):
            raise ParseError(f"{what}: nc must be 8 hex digits", header=what)
        return Credentials(
            username=p["username"],
            realm=p["realm"],
            nonce=p["nonce"],
            uri=p["uri"],
            response=p["response"],
            algorithm=p.get("algorithm", "MD5"),
            qop=qop,
            nc=nc,
            cnonce=p.get("cnonce"),
            opaque=p.get("opaque"),
            scheme="Digest",
        )

    @property
    def nonce_count(self) -> int:
        return int(self.nc, 16) if self.nc else 0

    def __str__(self) -> str:
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.qop:
            parts += [f"qop={self.qop}", f"nc={self.nc}"]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return f"{self.scheme} " + ", ".join(parts)


# H(A1) and H(A2) of the texts hashed last: a phone's H(A1) is the same at every
# registration, and so is H(A2) of its REGISTER ("REGISTER:sip:domain"); the response,
# which has the nonce in it, is hashed every time
_MEMO: Final[dict[tuple[str, str], str]] = {}
MEMO_SIZE: Final = 4096


def _hash_memo(algorithm: str, text: str) -> str:
    key = (algorithm, text)
    hashed = _MEMO.get(key)
    if hashed is None:
        hashed = _hash(algorithm, text)
        if len(_MEMO) >= MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = hashed
    return hashed


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username ":" realm ":" password): what a server may store instead of the password."""
    return _hash_memo(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """request-digest of RFC 2617 section 3.2.2.1 / RFC 7616 section 3.4.1."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash_memo(algorithm, f"{method}:{uri}")
    if qop:
        if qop != "auth":
            raise LocalProtocolError(f"unsupported qop {qop!r}")
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def verify(
    credentials: Credentials, method: str, *, password: str | None = None, ha1: str | None = None
) -> bool:
    """True when the credentials' response is right for this password (or stored HA1).

    The realm, nonce and nc are the caller's to check; this checks the arithmetic only.
    """
    if credentials.scheme.lower() != "digest" or not supported(credentials.algorithm):
        return False
    if credentials.qop not in (None, "auth"):
        return False
    if ha1 is None:
        if password is None:
            raise LocalProtocolError("verify needs a password or an HA1")
        ha1 = compute_ha1(credentials.username, credentials.realm, password, credentials.algorithm)
    expected = compute_response(
        ha1,
        method=method,
        uri=credentials.uri,
        nonce=credentials.nonce,
        algorithm=credentials.algorithm,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    return hmac.compare_digest(expected, credentials.response.lower())


def answer(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> Credentials:
    """The client side: credentials that answer a challenge (qop=auth when offered)."""
    if not supported(challenge.algorithm):
        raise LocalProtocolError(f"unsupported digest algorithm {challenge.algorithm!r}")
    qop = "auth" if "auth" in challenge.qop else None
    if challenge.qop and qop is None:
        raise LocalProtocolError(f"no supported qop in {challenge.qop}")
    nc_text = f"{nc:08x}" if qop else None
    if qop or challenge.algorithm.upper().endswith("-SESS"):
        cnonce = cnonce or secrets.token_hex(8)
    ha1 = compute_ha1(username, challenge.realm, password, challenge.algorithm)
    response = compute_response(
        ha1,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        opaque=challenge.opaque,
    )


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # signed by us but expired: answer with stale=true
    INVALID = "invalid"  # not ours, or tampered with


_NONCE_LAYOUT: Final = struct.Struct(">d8s")


MAX_MAC_KEY: Final = 64  # BLAKE2b takes keys of up to 64 bytes

# BLAKE2b's state after the key's block, copied for each MAC: keying costs a compression
# of its own, and a copy less (6,300 instructions a MAC against 7,400, callgrind)
_KEYED: Final[dict[tuple[bytes, int], Any]] = {}


def mac(key: bytes, data: bytes, size: int = 16) -> bytes:
    """A keyed BLAKE2b of ``data``, ``size`` bytes: a MAC by design (RFC 7693 section 2.5,
    keyed hashing), so no HMAC around it. It replaced HMAC-SHA-256, whose every call
    through OpenSSL 3 cost some 23,000 instructions in the live server (bench/README.md);
    a longer key is hashed down first, as HMAC does."""
    keyed = _KEYED.get((key, size))
    if keyed is None:
        if len(_KEYED) >= 64:  # a server has a key or two: never reached
            _KEYED.clear()
        short = hashlib.blake2b(key).digest() if len(key) > MAX_MAC_KEY else key
        keyed = _KEYED[(key, size)] = hashlib.blake2b(key=short, digest_size=size)
    state = keyed.copy()
    state.update(data)
    return state.digest()


class _RandomPool:
    """The operating system's random bytes, fetched 4 KB at a time: ``os.urandom(8)`` for
    each nonce was a system call (getrandom) for every 401 and 407, one of the six or
    seven system calls of a digest REGISTER exchange (bench/README.md, session 37). A
    forked child empties its copy, so that no two processes hand out the same bytes."""

    def __init__(self) -> None:
        self.data = b""
        self.at = 0

    def take(self, size: int) -> bytes:
        at = self.at
        if at + size > len(self.data):
            self.data = os.urandom(RANDOM_POOL_BYTES)
            at = 0
        self.at = at + size
        return self.data[at : at + size]

    def empty(self) -> None:
        self.data = b""
        self.at = 0


RANDOM_POOL_BYTES: Final = 4096
_RANDOM: Final = _RandomPool()
os.register_at_fork(after_in_child=_RANDOM.empty)


def make_nonce(key: bytes, now: float, realm: str = "") -> str:
    """A nonce carrying its issue time, signed with ``key`` (RFC 7616 section 3.3 suggests this)."""
    body = _NONCE_LAYOUT.pack(now, _RANDOM.take(8))
    return _encode_nonce(body + mac(key, body + realm.encode()))


_URL_SAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URL_SAFE: Final = bytes.maketrans(b"-_", b"+/")


def _encode_nonce(raw: bytes) -> str:
    # base64.urlsafe_b64encode, without its two Python calls
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE).decode().rstrip("=")


def _decode_nonce(nonce: str) -> bytes:
    """base64.urlsafe_b64decode, without its four Python calls; ValueError (not ASCII, or
    binascii.Error) or TypeError when it is not base64."""
    padded = (nonce + "=" * (-len(nonce) % 4)).encode("ascii")
    return binascii.a2b_base64(padded.translate(_FROM_URL_SAFE))


def check_nonce(key: bytes, nonce: str, now: float, ttl: float, realm: str = "") -> NonceState:
    """Whether a nonce is ours and fresh. Replay (nonce-count) is checked by the caller."""
    try:
        raw = _decode_nonce(nonce)
    except (ValueError, TypeError):  # not ASCII (UnicodeEncodeError), or binascii.Error
        return NonceState.INVALID
    if len(raw) != _NONCE_LAYOUT.size + 16 or _encode_nonce(raw) != nonce:
        # Only the one canonical spelling: base64 ignores stray characters and the
        # spare low bits of the last one, and a nonce's counts are kept by its text.
        return NonceState.INVALID
    body, signature = raw[: _NONCE_LAYOUT.size], raw[_NONCE_LAYOUT.size :]
    if not hmac.compare_digest(signature, mac(key, body + realm.encode())):
        return NonceState.INVALID
    issued, _ = _NONCE_LAYOUT.unpack(body)
    return nonce_age(issued, now, ttl)


def nonce_age(issued: float, now: float, ttl: float) -> NonceState:
    """VALID for a nonce of ours issued at ``issued`` and no more than ``ttl`` seconds
    ago, else STALE (one from the future too, a second's drift allowed)."""
    if not issued <= now + 1.0 or now - issued > ttl:
        return NonceState.STALE
    return NonceState.VALID


def issued_at(nonce: str) -> float:
    """When a nonce that :func:`check_nonce` found ours was issued."""
    issued: float = _NONCE_LAYOUT.unpack(_decode_nonce(nonce)[: _NONCE_LAYOUT.size])[0]
    return issued


def authorization_for(
    request: Request, challenged: Response, username: str, password: str
) -> tuple[str, str] | None:
    """The header that answers a 401 (Authorization) or 407 (Proxy-Authorization) for
    ``request``: the first challenge of the response this client can answer, or None."""
    header = "WWW-Authenticate" if challenged.status == 401 else "Proxy-Authenticate"
    name = "Authorization" if challenged.status == 401 else "Proxy-Authorization"
    for value in challenged.get_all(header):
        try:
            credentials = answer(
                Challenge.parse(value, header),
                method=request.method,
                uri=str(request.uri),
                username=username,
                password=password,
            )
        except (ParseError, LocalProtocolError):
            continue
        return name, str(credentials)
    return None
