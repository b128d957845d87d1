"""X-Connect-Token: browser phones present a JWT instead of a SIP password (Routr's form).

A token is checked locally with a public key (RS256, ES256 and the other asymmetric
algorithms: never ``none`` and never an HMAC, so a public key cannot be used as a shared
secret) or by a remote Verifier (Routr's ``fonoster.verifier.Verifier/Verify``). Its
claims say what it unlocks and nothing more: the AOR it may register, the methods it may
use, the domain whose agents it may call, and the ``aorLink`` its calls go to otherwise.

Routr's variables configure it: ``CONNECT_VERIFIER_PUBLIC_KEY_PATH`` or
``CONNECT_VERIFIER_ADDR``, and ``CONNECT_VERIFIER_OPTIONS`` (JSON, jsonwebtoken's
names: algorithms, issuer, audience, subject, clockTolerance, maxAge).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sipgrid.config import ConfigError
from sipgrid.pb import verifier_pb2, verifier_pb2_grpc
from sipgrid.sip import ParseError, SipUri, parse_uri

if TYPE_CHECKING:
    from sipgrid.services.settings import Settings

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
LEEWAY = 10.0  # seconds of clock difference forgiven on exp, nbf and iat
PRIVATE_KEY_FILE = "token-private.pem"
PUBLIC_KEY_FILE = "token-public.pem"


class TokenError(Exception):
    """A token that unlocks nothing; ``reason`` goes into the 403 (or 503) reason phrase."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    @property
    def phrase(self) -> str:
        """The reason phrase of the answer."""
        kind = "Forbidden" if self.status == 403 else "Service Unavailable"
        return f"{kind} ({self.reason})"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token allows."""

    aor: str
    allowed_methods: frozenset[str]
    domain: str = ""
    domain_ref: str = ""
    aor_link: str = ""
    ref: str = ""
    privacy: str = "NONE"
    max_contacts: int = 0
    expires_at: float | None = None

    def allows(self, method: str) -> bool:
        return method.upper() in self.allowed_methods

    @property
    def aor_uri(self) -> SipUri:
        uri = parse_uri(self.aor, what="aor")
        assert isinstance(uri, SipUri)  # checked by claims_from
        return uri


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Claims: ...


def claims_from(payload: Mapping[str, Any]) -> Claims:
    """Claims from a decoded payload (a JWT's or a Verifier's map of strings)."""
    aor = payload.get("aor")
    if not isinstance(aor, str) or not aor:
        raise TokenError("Token Lacks aor")
    try:
        uri = parse_uri(aor, what="aor")
    except ParseError:
        raise TokenError("Token aor Is Not A SIP URI") from None
    if not isinstance(uri, SipUri) or not uri.user:
        raise TokenError("Token aor Is Not A SIP URI")
    methods = payload.get("allowedMethods")
    if isinstance(methods, str):  # a Verifier's map: JSON or comma separated
        text = methods.strip()
        try:
            methods = json.loads(text) if text.startswith("[") else text.split(",")
        except ValueError:
            raise TokenError("Token allowedMethods Is Not A List") from None
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise TokenError("Token Lacks allowedMethods")
    try:
        max_contacts = int(payload.get("maxContacts") or 0)
    except (TypeError, ValueError):
        raise TokenError("Token maxContacts Is Not A Number") from None
    exp = payload.get("exp")
    try:
        expires_at = float(exp) if exp not in (None, "") else None
    except (TypeError, ValueError):
        raise TokenError("Token exp Is Not A Number") from None
    return Claims(
        aor=aor,
        allowed_methods=frozenset(m.strip().upper() for m in methods if m.strip()),
        domain=str(payload.get("domain") or ""),
        domain_ref=str(payload.get("domainRef") or ""),
        aor_link=str(payload.get("aorLink") or ""),
        ref=str(payload.get("ref") or ""),
        privacy=str(payload.get("privacy") or "NONE").upper(),
        max_contacts=max(0, max_contacts),
        expires_at=expires_at,
    )


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "Token Expired"),
    (jwt.ImmatureSignatureError, "Token Not Yet Valid"),
    (jwt.InvalidAlgorithmError, "Token Algorithm Not Allowed"),
    (jwt.InvalidSignatureError, "Bad Token Signature"),
    (jwt.InvalidAudienceError, "Token Audience Not Accepted"),
    (jwt.InvalidIssuerError, "Token Issuer Not Accepted"),
    (jwt.InvalidIssuedAtError, "Token Issued In The Future"),
    (jwt.DecodeError, "Malformed Token"),
)


@dataclass(frozen=True, slots=True)
class Options:
    """What CONNECT_VERIFIER_OPTIONS may say (jsonwebtoken's names)."""

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    issuer: str | None = None
    audience: str | list[str] | None = None
    subject: str | None = None
    leeway: float = LEEWAY
    max_age: float | None = None

    @classmethod
    def parse(cls, text: str, where: str = "CONNECT_VERIFIER_OPTIONS") -> Options:
        if not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{where}: not JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a JSON object")
        allowed = {"algorithms", "issuer", "audience", "subject", "clockTolerance", "maxAge"}
        for name in raw:
            if name not in allowed:
                raise ConfigError(
                    f"{where}: {name}: not supported (use {', '.join(sorted(allowed))})"
                )
        algorithms = raw.get("algorithms", list(DEFAULT_ALGORITHMS))
        if not isinstance(algorithms, list) or not algorithms:
            raise ConfigError(f"{where}: algorithms: must be a non-empty list")
        for name in algorithms:
            if name not in ASYMMETRIC:
                raise ConfigError(
                    f"{where}: algorithms: {name!r} is not allowed (a public key verifies "
                    f"only {', '.join(ASYMMETRIC)})"
                )
        for name in ("clockTolerance", "maxAge"):
            value = raw.get(name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ConfigError(f"{where}: {name}: must be a number of seconds")
        return cls(
            algorithms=tuple(algorithms),
            issuer=raw.get("issuer"),
            audience=raw.get("audience"),
            subject=raw.get("subject"),
            leeway=float(raw.get("clockTolerance", LEEWAY)),
            max_age=float(raw["maxAge"]) if raw.get("maxAge") is not None else None,
        )


class LocalVerifier:
    """Checks signature, algorithm, exp, nbf and iat with a public key (PyJWT)."""

    def __init__(
        self,
        public_key: str | bytes,
        options: Options | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = load_public_key(public_key)
        self._options = options or Options()
        self._clock = clock

    async def verify(self, token: str) -> Claims:
        return self.verify_now(token)

    def verify_now(self, token: str) -> Claims:
        options = self._options
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=list(options.algorithms),
                audience=options.audience,
                issuer=options.issuer,
                subject=options.subject,
                leeway=options.leeway,
                options={"require": ["exp"], "verify_aud": options.audience is not None},
            )
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"Token Lacks {error.claim}") from None
        except jwt.PyJWTError as error:
            for kind, reason in _REASONS:
                if isinstance(error, kind):
                    raise TokenError(reason) from None
            raise TokenError("Token Refused") from None
        now = self._clock()
        if options.max_age is not None:
            issued = payload.get("iat")
            if not isinstance(issued, int | float):
                raise TokenError("Token Lacks iat")
            if now - issued > options.max_age + options.leeway:
                raise TokenError("Token Too Old")
        return claims_from(payload)


class RemoteVerifier:
    """Routr's Verifier over gRPC: the payload's strings become the claims; an ``exp``
    in the payload is checked here too."""

    def __init__(
        self, addr: str, timeout: float = 3.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.addr = addr
        self._channel = grpc.aio.insecure_channel(addr)
        self._stub = verifier_pb2_grpc.VerifierStub(self._channel)
        self._timeout = timeout
        self._clock = clock

    async def verify(self, token: str) -> Claims:
        try:
            answer = await self._stub.Verify(
                verifier_pb2.VerifyRequest(token=token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise TokenError("Token Verifier Unavailable", status=503) from None
            detail = (error.details() or error.code().name).replace("\r", " ").replace("\n", " ")
            raise TokenError(f"Token Refused By Verifier: {detail[:80]}") from None
        claims = claims_from(dict(answer.payload))
        if claims.expires_at is not None and claims.expires_at + LEEWAY < self._clock():
            raise TokenError("Token Expired")
        return claims

    async def close(self) -> None:
        await self._channel.close()


def load_public_key(pem: str | bytes, where: str = "public key") -> Any:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"{where}: not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError(f"{where}: only RSA and EC keys are supported")
    return key


def verifier_from(settings: Settings, data_dir: Path | None = None) -> TokenVerifier | None:
    """Routr's variables; else, for the all-in-one, the key pair in its data directory."""
    options = Options.parse(settings.verifier_options)
    path = settings.verifier_public_key_path
    addr = settings.verifier_addr
    if path and addr:
        raise ConfigError(
            "environment: CONNECT_VERIFIER_PUBLIC_KEY_PATH and CONNECT_VERIFIER_ADDR: set one"
        )
    if addr:
        return RemoteVerifier(addr)
    if not path and data_dir is not None and (data_dir / PUBLIC_KEY_FILE).exists():
        path = str(data_dir / PUBLIC_KEY_FILE)
    if not path:
        return None
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{path}: CONNECT_VERIFIER_PUBLIC_KEY_PATH: cannot read: {error.strerror}"
        ) from None
    try:
        return LocalVerifier(text, options)
    except ConfigError as error:
        raise ConfigError(f"{path}: CONNECT_VERIFIER_PUBLIC_KEY_PATH: {error}") from None


# -- minting


def algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ConfigError("private key: only RSA and EC P-256 keys can sign tokens")


def load_private_key(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not an unencrypted PEM private key") from None


def mint(
    private_key: Any,
    *,
    aor: str,
    methods: Sequence[str],
    ttl: float,
    domain: str = "",
    domain_ref: str = "",
    aor_link: str = "",
    ref: str = "",
    privacy: str = "NONE",
    max_contacts: int = 0,
    now: float | None = None,
) -> str:
    """A signed token with Routr's claims, valid for ``ttl`` seconds."""
    try:  # the same rules as checking
        claims_from({"aor": aor, "allowedMethods": list(methods)})
    except TokenError as error:
        raise ValueError(f"cannot make that token: {error.reason}") from None
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    issued = int(time.time() if now is None else now)
    uri = parse_uri(aor, what="aor")
    assert isinstance(uri, SipUri)
    payload: dict[str, Any] = {
        "ref": ref or f"token-{uuid.uuid4().hex[:12]}",
        "aor": aor,
        "domain": domain or uri.host,
        "allowedMethods": [m.strip().upper() for m in methods if m.strip()],
        "privacy": privacy.upper(),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
    }
    for name, value in (("domainRef", domain_ref), ("aorLink", aor_link)):
        if value:
            payload[name] = value
    if max_contacts:
        payload["maxContacts"] = max_contacts
    return jwt.encode(payload, private_key, algorithm=algorithm_for(private_key))


def ensure_key_pair(data_dir: Path) -> tuple[Path, bool]:
    """The all-in-one's own signing key (EC P-256), made at first start, owner-only.
    Returns the private key's path and whether it was made now."""
    private = data_dir / PRIVATE_KEY_FILE
    if private.exists():
        return private, False
    key = ec.generate_private_key(ec.SECP256R1())
    data_dir.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    (data_dir / PUBLIC_KEY_FILE).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, True
