"""Digest authentication of agents: challenges, nonce freshness and replay.

Nonces are signed and carry their issue time (sipgrid.sip.digest), so any Connect
instance sharing the key can check them. The highest nonce-count seen per nonce is
kept in memory, or in Redis when several Connect instances share it: a replayed or
reused count is refused.
"""

from __future__ import annotations

import enum
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from sipgrid.services.settings import DEFAULT_DIGEST_ALGORITHMS, DIGEST_ALGORITHMS, Settings
from sipgrid.sip import Challenge, Credentials
from sipgrid.sip.digest import (
    NonceState,
    check_nonce,
    issued_at,
    make_nonce,
    nonce_age,
    verify,
)

NONCE_TTL: Final = 300.0
_SEEN_MAX: Final = 200_000


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # no credentials for this realm: send a challenge
    STALE = "stale"  # right password, expired nonce: challenge with stale=true
    FORBIDDEN = "forbidden"  # wrong password or unknown user


class NonceCounts(Protocol):
    """The highest nonce-count seen per nonce: a count not above it is a replay."""

    async def fresh(self, nonce: str, count: int) -> bool: ...


class MemoryNonceCounts:
    """One process's memory (the all-in-one default): the counts of the ``size`` nonces
    used last. A count forgotten to keep within that must not make its nonce new again
    (a captured answer would be taken as a first use): a nonce not known, and issued no
    later than the newest of those forgotten, is refused, and its sender challenged
    anew. (Only nonces that ``check_nonce`` found ours come here: their issue time can
    be read.)"""

    def __init__(self, size: int = _SEEN_MAX) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._size = size
        self._forgotten = -math.inf  # the latest issue time of a nonce forgotten

    async def fresh(self, nonce: str, count: int) -> bool:
        last = self._seen.get(nonce)
        if last is None:
            if self._forgotten > -math.inf and issued_at(nonce) <= self._forgotten:
                return False
            last = 0
        if count <= last:
            return False
        self._seen[nonce] = count
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._size:
            forgotten, _ = self._seen.popitem(last=False)
            self._forgotten = max(self._forgotten, issued_at(forgotten))
        return True


# KEYS[1]: the nonce's key; ARGV: the count, the key's lifetime in seconds
_FRESH: Final = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisNonceCounts:
    """Shared by every Connect instance on one Redis: a replay is refused by all."""

    def __init__(
        self, client: Any, *, prefix: str = "sipgrid:", ttl: float = 2 * NONCE_TTL
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = int(ttl)
        self._script = client.register_script(_FRESH)

    async def fresh(self, nonce: str, count: int) -> bool:
        key = f"{self._prefix}nc:{nonce}"
        return bool(await self._script(keys=[key], args=[count, self._ttl]))


def parse_algorithms(names: list[str]) -> tuple[str, ...]:
    """The names we support, upper case, in the given order (unknown names left out)."""
    return tuple(n.strip().upper() for n in names if n.strip().upper() in DIGEST_ALGORITHMS)


# a stand-in for the nonce while a challenge's text is made: no realm or algorithm holds it
_NONCE_MARK: Final = "\x00nonce\x00"
CHALLENGE_TEXTS_KEPT: Final = 256  # realms of the resources in force; emptied past it
# nonces this Connect issued last, known without their MAC (``Authenticator.check``): a
# client answers a challenge within a round trip, and these are the last seconds' even
# at thousands of challenges a second; an older one is checked as any other
ISSUED_KEPT: Final = 4096


class Authenticator:
    def __init__(
        self,
        key: bytes | None = None,
        *,
        algorithms: tuple[str, ...] | None = None,
        ttl: float = NONCE_TTL,
        clock: Callable[[], float] = time.time,
        counts: NonceCounts | None = None,
    ) -> None:
        self._key = key or secrets.token_bytes(32)
        self.algorithms = algorithms or DEFAULT_DIGEST_ALGORITHMS
        self.ttl = ttl
        self._clock = clock
        self._counts = counts or MemoryNonceCounts()
        # (realm, stale, algorithms) -> each challenge's text before and after its nonce
        self._challenge_texts: dict[tuple[str, bool, tuple[str, ...]], list[tuple[str, str]]] = {}
        # nonce -> (when it was issued, for which realm): the last ISSUED_KEPT, oldest first
        self._issued: dict[str, tuple[float, str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, counts: NonceCounts | None = None) -> Authenticator:
        """SIPGRID_NONCE_KEY (shared by every Connect instance; else a key of its own) and
        DIGEST_ALGORITHMS."""
        key = settings.nonce_key.encode() if settings.nonce_key else None
        return cls(key, algorithms=tuple(settings.digest_algorithms), counts=counts)

    @property
    def key(self) -> bytes:
        """The shared secret of this Connect (signs nonces and our Record-Route values)."""
        return self._key

    def challenge_headers(
        self, header: str, realm: str, *, stale: bool = False, algorithms: tuple[str, ...] = ()
    ) -> list[tuple[str, object]]:
        """One ``header`` field (WWW-Authenticate or Proxy-Authenticate) per algorithm, the
        preferred first (RFC 8760 section 2.4), all with one new nonce.

        Each is what ``str(Challenge)`` writes, made from the text around the nonce, kept
        per realm: a Challenge made and written out for every 401 and 407 cost some 6,000
        instructions of a REGISTER exchange's 354,000 (bench/README.md, session 37)."""
        key = (realm, stale, algorithms)
        texts = self._challenge_texts.get(key)
        if texts is None:
            texts = []
            for a in algorithms or self.algorithms:
                text = str(Challenge(realm, _NONCE_MARK, a, ("auth",), stale=stale))
                # the last mark: the realm comes before the nonce (and holds no NUL)
                before, _, after = text.rpartition(_NONCE_MARK)
                texts.append((before, after))
            if len(self._challenge_texts) >= CHALLENGE_TEXTS_KEPT:
                self._challenge_texts.clear()
            self._challenge_texts[key] = texts
        # the nonce is base64url: it is quoted as it is, nothing to escape
        now = self._clock()
        nonce = make_nonce(self._key, now, realm)
        issued = self._issued
        if len(issued) >= ISSUED_KEPT:
            del issued[next(iter(issued))]
        issued[nonce] = (now, realm)
        return [(header, before + nonce + after) for before, after in texts]

    async def check(
        self,
        method: str,
        credentials: list[Credentials],
        realm: str,
        password_for: Callable[[str], str | None],
        algorithms: tuple[str, ...] = (),
    ) -> tuple[Verdict, str | None]:
        """Check the credentials offered for ``realm``; return the verdict and the username.
        An answer with an algorithm that was not offered is challenged again (no downgrade)."""
        creds = None
        for answer in credentials:  # a loop: mypyc makes a generator object of a genexpr
            if answer.realm == realm and answer.scheme.lower() == "digest":
                creds = answer
                break
        if creds is None:
            return Verdict.CHALLENGE, None
        offered = {a.upper() for a in algorithms or self.algorithms}
        if creds.algorithm.upper() not in offered:
            return Verdict.CHALLENGE, creds.username
        # a nonce issued here lately is known by its text: what its MAC would prove, this
        # Connect saw when it made it (decoding, encoding and MACing it again took 14,700
        # instructions of a REGISTER exchange's 340,000; bench/README.md, session 39)
        now = self._clock()
        known = self._issued.get(creds.nonce)
        if known is not None and known[1] == realm:
            state = nonce_age(known[0], now, self.ttl)
        else:
            state = check_nonce(self._key, creds.nonce, now, self.ttl, realm)
        if state is NonceState.INVALID:
            return Verdict.CHALLENGE, creds.username
        password = password_for(creds.username)
        if password is None or not verify(creds, method, password=password):
            return Verdict.FORBIDDEN, creds.username
        if state is NonceState.STALE:
            return Verdict.STALE, creds.username
        # with qop a nonce serves while its nonce-count grows; without (RFC 2069 style)
        # it serves once, so that a captured answer cannot be replayed
        count = creds.nonce_count if creds.qop else 1
        if not await self._counts.fresh(creds.nonce, count):
            return Verdict.CHALLENGE, creds.username  # a replay: start again
        return Verdict.OK, creds.username
