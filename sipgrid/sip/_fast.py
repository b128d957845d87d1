"""Four readers on every message's path, in their usual shapes only.

This file is the reference: sipgrid/sip/_fast.c does the same in C, and runs in its place
when the compiled build does (sipgrid/native.py; native/build.py builds it beside the
mypyc modules). Each function reads one common shape and returns None for anything else;
its caller then reads the text with the careful reader that says what is wrong. So the C
code never has to report an error, and tests/sip/test_fast.py holds the two to the same
answers on generated texts. It imports nothing of the package (the token's grammar is
_abnf.TOKEN's, written again), so that the tests and the fuzz target can load it from its
file beside the build, whichever of the two the package runs.

What the C saves: the loops here run compiled by mypyc too, but every step of them is a
call into the interpreter's string functions that makes a new object (a partition's
tuple, a stripped copy, a one-character string to compare). In C the scan is over the
characters, and only the strings kept are made. See bench/README.md, session 34.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]+"
# parameters without white space or quotes: ;token[=token, host or IPv6 reference]
_simple_params_re: Final = re.compile(rf"(?:;{_TOKEN}(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)+")
_token_re: Final = re.compile(_TOKEN)


def fields(lines: list[str], known: Mapping[str, tuple[str, str]]) -> list[str] | None:
    """The key, the name and the value of each header line of ``lines[1:]`` (the start
    line first), one after another: ``known`` gives the key and the name of the text before
    a line's ``:``; the value is the rest, without spaces and tabs around it. None when a
    line has no ``:`` or a name ``known`` lacks (a folded line never is). Flat, so that
    the caller makes its fields with no call through the interpreter."""
    out: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        found = known.get(name)
        if found is None or not colon:
            return None
        out.append(found[0])
        out.append(found[1])
        out.append(value.strip(" \t"))
    return out


def header_params(text: str) -> tuple[tuple[str, str | None], ...] | None:
    """``;name[=value]...`` with no white space and no quotes, as pairs (a flag's value
    None); None for any other text, the empty one included."""
    if not _simple_params_re.fullmatch(text):
        return None
    params: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        key, eq, given = item.partition("=")
        params.append((key, given if eq else None))
    return tuple(params)


# digest's parameter names in the case every client writes them
_PARAM_NAMES: Final = frozenset(
    {
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
        "stale",
        "domain",
    }
)


def digest_params(rest: str) -> dict[str, str] | None:
    """A digest value's parameters (``rest``: what follows the scheme) as every client
    writes them: ``name=value`` or ``name="value"`` separated by commas, blanks (spaces
    and tabs) around each part; names in lower case, values unquoted. None when anything is
    unusual: an empty item, a backslash or a line break in quotes, a value with blanks or
    text after its quotes, a name that is not a token, a comma and blanks at the end."""
    params: dict[str, str] = {}
    end = len(rest)
    at = _skip_blanks(rest, 0)
    while at < end:
        equals = rest.find("=", at)
        if equals < 0:
            return None
        name = rest[at : _trim_blanks(rest, at, equals)]
        if name not in _PARAM_NAMES:
            if not _token_re.fullmatch(name):
                return None
            name = name.lower()
        at = _skip_blanks(rest, equals + 1)
        if at < end and rest[at] == '"':
            close = rest.find('"', at + 1)
            if close < 0:
                return None
            value = rest[at + 1 : close]
            if "\\" in value or "\r" in value or "\n" in value:
                return None
            at = _skip_blanks(rest, close + 1)
        else:
            comma = rest.find(",", at)
            stop = end if comma < 0 else comma
            value = rest[at : _trim_blanks(rest, at, stop)]
            if '"' in value or " " in value or "\t" in value:
                return None
            at = stop
        if at < end:
            if rest[at] != ",":
                return None
            at = _skip_blanks(rest, at + 1)
            if at == end and rest[end - 1] != ",":  # a comma, then blanks, at the end
                return None
        params[name] = value
    return params


def _skip_blanks(text: str, at: int) -> int:
    end = len(text)
    while at < end and text[at] in " \t":
        at += 1
    return at


def _trim_blanks(text: str, start: int, stop: int) -> int:
    while stop > start and text[stop - 1] in " \t":
        stop -= 1
    return stop


# The common shape of a SIP URI after its scheme (the rules are those of
# uri._parse_sip_uri_carefully): [ user [ ":" password ] "@" ] host [ ":" port ]
# *( ";" param ) [ "?" headers ]. Its port is ASCII digits (\d would take any script's).
_URI_PARAM: Final = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+"
_HOST_ONWARDS: Final = (
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?::([0-9]{1,5}))?"
    rf"((?:;{_URI_PARAM}(?:={_URI_PARAM})?)*)"
    r"(?:\?([A-Za-z0-9\-_.!~*'()\[\]/?:+$%=&]*))?"
)
_sip_uri_re: Final = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/%#]+)(?::([A-Za-z0-9\-_.!~*'()&=+$,%]*))?@)?" + _HOST_ONWARDS
)
# the same without a user part, for a text with no "@" (where the user part cannot match):
# the regex above tries a user part first and takes it back character by character
_sip_uri_no_user_re: Final = re.compile(_HOST_ONWARDS)

SipUriParts = tuple[
    str | None, str | None, str, int | None, tuple[tuple[str, str | None], ...], str | None
]


def sip_uri(rest: str) -> SipUriParts | None:
    """A sip: or sips: URI's parts after its scheme and ":" in the common shape: user,
    password, host, port (None when absent), parameters as pairs (a flag's value None) and
    headers (None when there is no "?"); None for any other text or a port over 65535."""
    if "@" in rest:
        m = _sip_uri_re.fullmatch(rest)
        if m is None:
            return None
        user, password, host, port, params, headers = m.groups()
    else:
        m = _sip_uri_no_user_re.fullmatch(rest)
        if m is None:
            return None
        user = password = None
        host, port, params, headers = m.groups()
    if port is not None and int(port) > 65535:
        return None
    pairs: list[tuple[str, str | None]] = []
    if params:
        for item in params[1:].split(";"):
            name, eq, value = item.partition("=")
            pairs.append((name, value if eq else None))
    return user, password, host, int(port) if port else None, tuple(pairs), headers
