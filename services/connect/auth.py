"""Digest authentication of agents: challenges, nonce freshness and replay.

Nonces are signed and carry their issue time (sipgrid.sip.digest), so any Connect
instance sharing the key can check them. The highest nonce-count seen per nonce is
kept here, in memory: a replayed or reused count is refused.
"""

from __future__ import annotations

import enum
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from sipgrid.sip import Challenge, Credentials
from sipgrid.sip.digest import NonceState, check_nonce, make_nonce, verify

NONCE_TTL = 300.0
_SEEN_MAX = 200_000


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # no credentials for this realm: send a challenge
    STALE = "stale"  # right password, expired nonce: challenge with stale=true
    FORBIDDEN = "forbidden"  # wrong password or unknown user


class Authenticator:
    def __init__(
        self,
        key: bytes | None = None,
        *,
        algorithm: str = "MD5",
        ttl: float = NONCE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        env_key = os.environ.get("SIPGRID_NONCE_KEY")
        self._key = key or (env_key.encode() if env_key else secrets.token_bytes(32))
        self.algorithm = algorithm
        self.ttl = ttl
        self._clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()

    @property
    def key(self) -> bytes:
        """The shared secret of this Connect (signs nonces and our Record-Route values)."""
        return self._key

    def challenge(self, realm: str, *, stale: bool = False) -> Challenge:
        nonce = make_nonce(self._key, self._clock(), realm)
        return Challenge(
            realm=realm, nonce=nonce, algorithm=self.algorithm, qop=("auth",), stale=stale
        )

    def check(
        self,
        method: str,
        credentials: list[Credentials],
        realm: str,
        password_for: Callable[[str], str | None],
    ) -> tuple[Verdict, str | None]:
        """Check the credentials offered for ``realm``; return the verdict and the username."""
        creds = next(
            (c for c in credentials if c.realm == realm and c.scheme.lower() == "digest"), None
        )
        if creds is None:
            return Verdict.CHALLENGE, None
        state = check_nonce(self._key, creds.nonce, self._clock(), self.ttl, realm)
        if state is NonceState.INVALID:
            return Verdict.CHALLENGE, creds.username
        password = password_for(creds.username)
        if password is None or not verify(creds, method, password=password):
            return Verdict.FORBIDDEN, creds.username
        if state is NonceState.STALE:
            return Verdict.STALE, creds.username
        if creds.qop and not self._fresh_count(creds.nonce, creds.nonce_count):
            return Verdict.CHALLENGE, creds.username  # a replayed count: start again
        return Verdict.OK, creds.username

    def _fresh_count(self, nonce: str, count: int) -> bool:
        last = self._seen.get(nonce, 0)
        if count <= last:
            return False
        self._seen[nonce] = count
        self._seen.move_to_end(nonce)
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return True
