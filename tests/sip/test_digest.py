from __future__ import annotations

import base64
import hashlib
import os
import string
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipgrid.sip import Challenge, Credentials, NonceState, ParseError, _fast
from sipgrid.sip.digest import (
    _MEMO,
    MEMO_SIZE,
    RANDOM_POOL_BYTES,
    _read_params_carefully,
    answer,
    check_nonce,
    compute_ha1,
    compute_response,
    mac,
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
    for bad in (
        nonce[:-1] + "é",  # not ASCII
        nonce[:-2],  # cut short
        "A",  # not a whole byte
    ):
        assert check_nonce(key, bad, now=1010.0, ttl=30, realm="sip.local") is NonceState.INVALID
    # the standard alphabet's spelling of the same bytes is not the nonce
    urlsafe = next(
        n for n in (make_nonce(key, 1000.0, "sip.local") for _ in range(200)) if "-" in n
    )
    assert check_nonce(key, urlsafe, now=1010.0, ttl=30, realm="sip.local") is NonceState.VALID
    standard = urlsafe.replace("-", "+").replace("_", "/")
    assert check_nonce(key, standard, now=1010.0, ttl=30, realm="sip.local") is NonceState.INVALID
    assert make_nonce(key, now=1000.0) != make_nonce(key, now=1000.0)


def test_nonces_stay_distinct_across_the_random_pools_refills() -> None:
    """The random part comes from a pool of the OS's bytes: three pools' worth of
    nonces made at one instant are all different, and each carries 8 new bytes."""
    key = b"k" * 32
    count = 3 * RANDOM_POOL_BYTES // 8 + 5
    nonces = {make_nonce(key, now=1000.0) for _ in range(count)}
    assert len(nonces) == count
    randoms = {struct.unpack(">d8s", base64.urlsafe_b64decode(n + "=")[:16])[1] for n in nonces}
    assert len(randoms) == count


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_makes_other_nonces_than_its_parent() -> None:
    """A child forked with the pool half used must not hand out the parent's next bytes."""
    key = b"k" * 32
    make_nonce(key, now=1000.0)  # the pool filled before the fork
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's report goes through the pipe)
        try:
            os.write(write, make_nonce(key, now=1000.0).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode()
    os.waitpid(child, 0)
    ours = make_nonce(key, now=1000.0)
    assert theirs and theirs != ours
    assert check_nonce(key, theirs, now=1000.0, ttl=30) is NonceState.VALID


@pytest.mark.parametrize("length", [1, 32, 64, 65, 200])
def test_nonces_take_keys_of_any_length(length: int) -> None:
    """SIPGRID_NONCE_KEY is the operator's: BLAKE2b's 64-byte limit on keys is not theirs."""
    key = bytes(range(256))[:length]
    nonce = make_nonce(key, now=1000.0)
    assert check_nonce(key, nonce, now=1010.0, ttl=30) is NonceState.VALID
    other = key[:-1] + bytes([key[-1] ^ 1])
    assert check_nonce(other, nonce, now=1010.0, ttl=30) is NonceState.INVALID
    assert len(mac(key, b"text", 12)) == 12


@pytest.mark.parametrize("length", [1, 64, 65])
def test_a_mac_is_keyed_blake2b_whatever_came_before(length: int) -> None:
    """The keyed state is made once and copied: no MAC may leave anything in it."""
    key = bytes(range(length))
    short = key if length <= 64 else hashlib.blake2b(key).digest()
    for data in (b"first", b"second", b"first"):
        expected = hashlib.blake2b(data, key=short, digest_size=16).digest()
        assert mac(key, data) == expected
        assert mac(key, data, 12) == hashlib.blake2b(data, key=short, digest_size=12).digest()


def test_remembered_hashes_stay_right_and_bounded() -> None:
    """H(A1) and H(A2) are remembered by their text: another password is another text,
    and the memo never holds more than MEMO_SIZE texts."""
    first = compute_ha1("alice", "sip.local", "one")
    assert first == hashlib.md5(b"alice:sip.local:one").hexdigest()
    assert (
        compute_ha1("alice", "sip.local", "two") == hashlib.md5(b"alice:sip.local:two").hexdigest()
    )
    assert compute_ha1("alice", "sip.local", "one", "SHA-256") != first
    for n in range(MEMO_SIZE + 10):
        compute_ha1(f"user{n}", "sip.local", "secret")
        assert len(_MEMO) <= MEMO_SIZE
    assert compute_ha1("alice", "sip.local", "one") == first


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


@pytest.mark.parametrize(
    ("params", "read_at_once"),
    [
        ('username="1001", realm="sip.local", nonce="n", uri="sip:sip.local", response="ab"', True),
        ('username = "ab" ,realm="r,with,commas",nc=00000001,  qop=auth  ', True),
        ('username = "a\\"b\\\\c" ,realm="r,with,commas",nc=00000001,  qop=auth  ', False),
        ('username="a", realm="r",', True),  # a comma at the end
        ('username="a", realm=""', True),  # an empty quoted value
        ("username=, realm=r", True),  # an empty token value
        ('username="a",, realm="r"', False),  # an empty item
        ('username="a", realm=r s', False),  # a value with a space
        ('username="a" x, realm="r"', False),  # text after the quotes
        ('username="a", realm="r\\', False),  # an escape with nothing after it
        ('username="a", realm="r', False),  # no closing quote
        ('user name="a", realm="r"', False),  # not a token
        ('username, realm="r"', False),  # no "="
        ('username="a", ="r"', False),  # no name
    ],
)
def test_both_readings_of_auth_params_agree(params: str, read_at_once: bool) -> None:
    """The one-pass reading (sipgrid/sip/_fast) gives what the careful one gives, or
    leaves anything unusual to it (an escape in quotes among them)."""
    fast = _fast.digest_params(params)
    try:
        careful: dict[str, str] | str = _read_params_carefully(params, "Authorization")
    except ParseError as error:
        careful = error.reason
    assert (fast is not None) is read_at_once
    assert fast is None or fast == careful
    if params.startswith('username = "a\\'):
        assert careful == {
            "username": 'a"b\\c',
            "realm": "r,with,commas",
            "nc": "00000001",
            "qop": "auth",
        }


_tokens = st.text(alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1)
_quoted = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "")).map(
    lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
_spaces = st.sampled_from(["", " ", "  ", "\t"])


@given(
    st.lists(
        st.tuples(_spaces, _tokens, _spaces, _spaces, st.one_of(_tokens, _quoted), _spaces),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_well_formed_auth_params_are_read_at_once_as_carefully(
    items: list[tuple[str, str, str, str, str, str]],
) -> None:
    params = ",".join(f"{a}{name}{b}={c}{value}{d}" for a, name, b, c, value, d in items)
    fast = _fast.digest_params(params)
    careful = _read_params_carefully(params, "Authorization")
    assert fast == careful if "\\" not in params else fast is None
