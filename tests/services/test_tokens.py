"""X-Connect-Token: browser phones register and call with a JWT (Routr's claims).

Every way a token can be wrong is refused with a reason that names it; a good token
unlocks exactly what its claims say. Driven through the Connect processor in memory; the
remote Verifier is a real gRPC server in the test."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sipgrid.api.types import MessageRequest, NetInterface, Transport
from sipgrid.config import ConfigError
from sipgrid.pb import verifier_pb2, verifier_pb2_grpc
from sipgrid.services.connect.tokens import (
    LocalVerifier,
    Options,
    RemoteVerifier,
    ensure_key_pair,
    load_private_key,
    mint,
    verifier_from,
)
from sipgrid.services.settings import Settings
from sipgrid.sip import Request, Response, parse

from .test_connect import ALICE, US, Switch, registered

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
WEB = NetInterface("127.0.0.1", 9001, Transport.WSS)


def public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def token(key: Any = EC_KEY, **claims: Any) -> str:
    fields: dict[str, Any] = {
        "aor": "sip:web1@sip.local",
        "methods": ["REGISTER", "INVITE"],
        "ttl": 3600,
    }
    fields.update(claims)
    return mint(key, **fields)


def switch(pem: bytes = public_pem(EC_KEY)) -> Switch:
    return Switch(tokens=LocalVerifier(pem))


def web_register(value: str, *, user: str = "web1", expires: int = 600) -> str:
    return (
        "REGISTER sip:sip.local SIP/2.0\n"
        "Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bKw1\n"
        f"From: <sip:{user}@sip.local>;tag=w1\nTo: <sip:{user}@sip.local>\n"
        "Call-ID: web-reg\nCSeq: 1 REGISTER\nMax-Forwards: 70\n"
        f"Contact: <sip:x7@abc.invalid;transport=ws>\nExpires: {expires}\n"
        f"X-Connect-Token: {value}\nContent-Length: 0\n\n"
    )


def web_invite(value: str, callee: str = "sip:1002@sip.local") -> str:
    return (
        f"INVITE {callee} SIP/2.0\n"
        "Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bKw2\n"
        "From: <sip:web1@sip.local>;tag=w2\nTo: <" + callee + ">\n"
        "Call-ID: web-call\nCSeq: 1 INVITE\nMax-Forwards: 70\n"
        "Contact: <sip:x7@abc.invalid;transport=ws>\n"
        f"X-Connect-Token: {value}\nContent-Length: 0\n\n"
    )


def forged_hs256(pem: bytes) -> str:
    """The classic confusion attack: HS256 signed with the public key as the secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(
        json.dumps(
            {"aor": "sip:web1@sip.local", "allowedMethods": ["REGISTER"], "exp": 2**31}
        ).encode()
    )
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def tampered() -> str:
    """A good token whose claims were changed afterwards (a wider aor)."""
    header, _, signature = token().split(".")
    payload = jwt.decode(token(), options={"verify_signature": False})
    payload["allowedMethods"] = ["REGISTER", "INVITE", "MESSAGE"]
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def test_a_valid_token_registers_its_aor_for_no_longer_than_it_lives() -> None:
    sw = switch()
    sw.clock.now = time.time()
    ok = sw.answer(web_register(token(ttl=120)), WEB)
    assert ok.status == 200, ok.reason
    routes = asyncio.run(sw.location.find_routes("sip:web1@sip.local"))
    assert [r.contact_uri for r in routes] == ["sip:x7@abc.invalid;transport=ws"]
    assert 115 <= routes[0].expires <= 120  # asked for 600, the token lives 120 s
    assert routes[0].transport is Transport.WSS and routes[0].flow == str(WEB)


def test_an_rsa_token_works_too() -> None:
    ok = switch(public_pem(RSA_KEY)).answer(web_register(token(RSA_KEY)), WEB)
    assert ok.status == 200, ok.reason


# each made when its test runs: a token minted at collection could expire (or become
# valid) before a long suite reaches the test (CI saw "not yet valid" pass after 16 min)
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: token(ttl=60, now=time.time() - 3600), "Token Expired"),
    "not-yet-valid": (lambda: token(now=time.time() + 3600), "Token Not Yet Valid"),
    "wrong-key": (lambda: token(OTHER_KEY), "Bad Token Signature"),
    "tampered": (tampered, "Bad Token Signature"),
    "alg-none": (
        lambda: jwt.encode(
            {"aor": "sip:web1@sip.local", "allowedMethods": ["REGISTER"]}, "", "none"
        ),
        "Token Algorithm Not Allowed",
    ),
    "hs256-with-public-key": (
        lambda: forged_hs256(public_pem(EC_KEY)),
        "Token Algorithm Not Allowed",
    ),
    "malformed": (lambda: "not.a.token", "Malformed Token"),
    "method-missing": (lambda: token(methods=["INVITE"]), "Method Not Allowed By Token"),
    "other-aor": (lambda: token(aor="sip:web2@sip.local"), "Token Is For Another AOR"),
    "no-exp": (
        lambda: jwt.encode(
            {"aor": "sip:web1@sip.local", "allowedMethods": ["REGISTER"]}, EC_KEY, "ES256"
        ),
        "Token Lacks exp",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_is_refused_with_its_reason(case: str) -> None:
    make, reason = BAD_TOKENS[case]
    sw = switch()
    refused = sw.answer(web_register(make()), WEB)
    assert (refused.status, refused.reason) == (403, f"Forbidden ({reason})")
    assert not asyncio.run(sw.location.find_routes("sip:web1@sip.local"))


def test_without_a_verifier_tokens_are_refused_not_ignored() -> None:
    refused = Switch().answer(web_register(token()), WEB)
    assert (refused.status, refused.reason) == (403, "Forbidden (Tokens Not Accepted Here)")


def test_a_token_calls_an_agent_of_its_domain_and_never_leaves_sipgrid() -> None:
    sw = switch()
    bob = NetInterface("127.0.0.1", 7002, Transport.UDP)
    registered(sw, "1002", bob)
    forwarded, result = sw.forwarded(web_invite(token()), WEB)
    assert str(forwarded.uri) == "sip:1002@127.0.0.1:7002"
    assert "X-Connect-Token" not in forwarded and result.destination == bob
    # a token without INVITE cannot call; one of another domain reaches only its aorLink
    refused = sw.answer(web_invite(token(methods=["REGISTER"])), WEB)
    assert (refused.status, refused.reason) == (403, "Forbidden (Method Not Allowed By Token)")
    other = token(aor="sip:web1@other.example", domain="other.example")
    assert sw.answer(web_invite(other), WEB).status == 404


def test_a_token_with_an_aor_link_calls_it() -> None:
    """Routr's use: a browser joins a conference server (a static peer) by its token."""
    sw = switch()
    value = token(aor_link="sip:conference@media.local", privacy="PRIVATE")
    forwarded, result = sw.forwarded(web_invite(value, "sip:room-7@rooms.example"), WEB)
    assert result.destination == NetInterface("127.0.0.1", 5090, Transport.UDP)
    assert forwarded.get("Privacy") == "id"


def test_a_phone_calls_a_browser_registered_with_a_token() -> None:
    sw = switch()
    assert sw.answer(web_register(token()), WEB).status == 200
    registered(sw, "1001", ALICE)
    challenged = sw.answer(call_web1(1))
    from .test_connect import authorization

    auth = authorization(challenged, "1001", "INVITE", "sip:web1@sip.local")
    sw.finds.clear()
    forwarded, result = sw.forwarded(call_web1(2, auth))
    assert str(forwarded.uri) == "sip:x7@abc.invalid;transport=ws"
    assert result.target_flow == WEB
    # looked up once: a lookup may move round-robin counters and session affinity, and
    # in the distributed wiring each is a round trip to Location
    assert sw.finds == ["sip:web1@sip.local"]


def call_web1(cseq: int, auth: str = "") -> str:
    return (
        "INVITE sip:web1@sip.local SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKp{cseq}\n"
        "From: <sip:1001@sip.local>;tag=alice\nTo: <sip:web1@sip.local>\n"
        f"Call-ID: to-web\nCSeq: {cseq} INVITE\nMax-Forwards: 70\n"
        f"Contact: <sip:1001@127.0.0.1:7001>\n{auth}Content-Length: 0\n\n"
    )


# -- configuration


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('{"algorithms": ["none"]}', "algorithms: 'none' is not allowed"),
        ('{"algorithms": ["HS256"]}', "algorithms: 'HS256' is not allowed"),
        ('{"ignoreExpiration": true}', "ignoreExpiration: not supported"),
        ('{"clockTolerance": -1}', "clockTolerance: must be a number of seconds"),
        ("[", "not JSON"),
    ],
)
def test_verifier_options_are_checked_at_start(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="CONNECT_VERIFIER_OPTIONS: .*" + complaint.split(":")[0]):
        Options.parse(text)
    try:
        Options.parse(text)
    except ConfigError as error:
        assert complaint in str(error) and "\n" not in str(error)


def test_options_narrow_what_is_accepted() -> None:
    issued = token(aor="sip:web1@sip.local")
    narrowed = LocalVerifier(public_pem(EC_KEY), Options.parse('{"algorithms": ["RS256"]}'))
    with pytest.raises(Exception, match="Token Algorithm Not Allowed"):
        narrowed.verify_now(issued)
    aged = LocalVerifier(public_pem(EC_KEY), Options.parse('{"maxAge": 60}'))
    with pytest.raises(Exception, match="Token Too Old"):
        aged.verify_now(token(now=time.time() - 120, ttl=3600))


def test_the_verifier_comes_from_routrs_variables(tmp_path: Path) -> None:
    assert verifier_from(Settings.load({})) is None
    with pytest.raises(ConfigError, match="CONNECT_VERIFIER_PUBLIC_KEY_PATH: cannot read"):
        verifier_from(
            Settings.load({"CONNECT_VERIFIER_PUBLIC_KEY_PATH": str(tmp_path / "missing.pem")})
        )
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match=r"junk\.pem: CONNECT_VERIFIER_PUBLIC_KEY_PATH: "):
        verifier_from(Settings.load({"CONNECT_VERIFIER_PUBLIC_KEY_PATH": str(junk)}))
    # the all-in-one's own key pair, made once, owner-only, signs what it verifies
    private, made = ensure_key_pair(tmp_path)
    assert made and private.stat().st_mode & 0o777 == 0o600
    assert ensure_key_pair(tmp_path) == (private, False)
    verifier = verifier_from(Settings.load({}), tmp_path)
    assert isinstance(verifier, LocalVerifier)
    claims = verifier.verify_now(token(load_private_key(private), max_contacts=2))
    assert claims.aor == "sip:web1@sip.local" and claims.max_contacts == 2


# -- the remote Verifier (Routr's gRPC contract)


class Verifier(verifier_pb2_grpc.VerifierServicer):
    """A Verifier that knows two tokens."""

    async def Verify(
        self, request: verifier_pb2.VerifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> verifier_pb2.VerifyResponse:
        if request.token == "good":
            payload = {"aor": "sip:web1@sip.local", "allowedMethods": "REGISTER,INVITE"}
            return verifier_pb2.VerifyResponse(payload=payload)
        if request.token == "listed":
            payload = {"aor": "sip:web1@sip.local", "allowedMethods": '["INVITE"]'}
            return verifier_pb2.VerifyResponse(payload=payload)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        raise AssertionError


def test_a_remote_verifier_is_asked(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[int, str]]:
        server = grpc.aio.server()
        verifier_pb2_grpc.add_VerifierServicer_to_server(Verifier(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        remote = RemoteVerifier(f"127.0.0.1:{port}", timeout=2.0)
        sw = Switch(tokens=remote)
        answers = []
        for value in ("good", "listed", "bogus"):
            result = await sw.processor.process_message(request_of(web_register(value)))
            assert isinstance(result.message, Response)
            answers.append((result.message.status, result.message.reason))
        await server.stop(None)
        result = await sw.processor.process_message(request_of(web_register("good")))
        assert isinstance(result.message, Response)
        answers.append((result.message.status, result.message.reason))
        await remote.close()
        return answers

    assert asyncio.run(scenario()) == [
        (200, "OK"),
        (403, "Forbidden (Method Not Allowed By Token)"),
        (403, "Forbidden (Token Refused By Verifier: unknown token)"),
        (503, "Service Unavailable (Token Verifier Unavailable)"),
    ]


def request_of(text: str) -> MessageRequest:
    message = parse(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return MessageRequest(
        ref="r",
        edge_port_ref="ep",
        method=message.method,
        sender=WEB,
        listening_points=[US],
        message=message,
    )
