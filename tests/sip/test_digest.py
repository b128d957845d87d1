from __future__ import annotations

import string

import pytest

from sipgrid.sip import Challenge, Credentials, NonceState, ParseError
from sipgrid.sip.digest import (
    answer,
    check_nonce,
    compute_ha1,
    compute_response,
    make_nonce,
    verify,
)


def test_rfc2617_example() -> None:
    # RFC 2617 section 3.5
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_sha256_example() -> None:
    # RFC 7616 section 3.9.1
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256")
    response = compute_response(
        ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm="SHA-256",
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256"])
@pytest.mark.parametrize("qop", [("auth",), ()])
def test_client_answer_verifies_on_the_server(algorithm: str, qop: tuple[str, ...]) -> None:
    challenge = Challenge(
        realm="sip.local", nonce="abc123", algorithm=algorithm, qop=qop, opaque="xyz"
    )
    wire = Challenge.parse(str(challenge))
    assert wire == challenge
    creds = answer(
        wire, method="REGISTER", uri="sip:sip.local", username="1001", password="s3cret", nc=3
    )
    parsed = Credentials.parse(str(creds))
    assert parsed == creds
    assert verify(parsed, "REGISTER", password="s3cret")
    assert verify(parsed, "REGISTER", ha1=compute_ha1("1001", "sip.local", "s3cret", algorithm))
    assert not verify(parsed, "REGISTER", password="wrong")
    assert not verify(parsed, "INVITE", password="s3cret")
    if qop:
        assert parsed.nonce_count == 3


def test_credentials_parse_errors_name_the_header() -> None:
    with pytest.raises(ParseError) as info:
        Credentials.parse('Digest username="a", realm="r"', "Proxy-Authorization")
    assert info.value.header == "Proxy-Authorization" and "nonce" in info.value.reason
    with pytest.raises(ParseError):
        Credentials.parse(
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth'
        )
    with pytest.raises(ParseError):
        Credentials.parse('Digest username="a, realm="r"')


def test_auth_int_and_unknown_schemes_do_not_verify() -> None:
    creds = Credentials("u", "r", "n", "sip:x", "00", qop="auth-int", nc="00000001", cnonce="c")
    assert not verify(creds, "INVITE", password="p")
    other = Credentials.parse("NoOneKnowsThisScheme opaque-data=here")
    assert other.scheme == "NoOneKnowsThisScheme" and not verify(other, "REGISTER", password="p")


def test_challenge_with_stale_and_multiple_qop() -> None:
    c = Challenge.parse(
        'Digest realm="a.b", nonce="n", qop="auth,auth-int", stale=TRUE, algorithm=SHA-256'
    )
    assert c.qop == ("auth", "auth-int") and c.stale and c.algorithm == "SHA-256"
    assert "stale=true" in str(c)


def test_signed_nonces_expire_and_resist_forgery() -> None:
    key = b"k" * 32
    nonce = make_nonce(key, now=1000.0, realm="sip.local")
    assert check_nonce(key, nonce, now=1010.0, ttl=30, realm="sip.local") is NonceState.VALID
    assert check_nonce(key, nonce, now=1031.0, ttl=30, realm="sip.local") is NonceState.STALE
    assert check_nonce(key, nonce, now=1010.0, ttl=30, realm="other") is NonceState.INVALID
    assert (
        check_nonce(b"x" * 32, nonce, now=1010.0, ttl=30, realm="sip.local") is NonceState.INVALID
    )
    flipped = nonce[:10] + ("B" if nonce[10] != "B" else "C") + nonce[11:]
    assert check_nonce(key, flipped, now=1010.0, ttl=30, realm="sip.local") is NonceState.INVALID
    assert check_nonce(key, "!!not base64!!", now=1010.0, ttl=30) is NonceState.INVALID
    assert make_nonce(key, now=1000.0) != make_nonce(key, now=1000.0)


def test_a_nonce_is_accepted_only_in_its_own_spelling() -> None:
    """base64 decoding skips stray characters and the spare bits of the last one, so
    other strings decode to the same bytes; the nonce counts are kept per string."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    key = b"k" * 32
    for _ in range(50):
        nonce = make_nonce(key, now=1000.0)
        same_bits = alphabet[alphabet.index(nonce[-1]) ^ 1]
        for other in (
            nonce[:-1] + same_bits,
            nonce + "!",
            nonce[:5] + "." + nonce[5:],
            nonce + "=",
        ):
            assert check_nonce(key, other, now=1010.0, ttl=30) is NonceState.INVALID, other
        assert check_nonce(key, nonce, now=1010.0, ttl=30) is NonceState.VALID
