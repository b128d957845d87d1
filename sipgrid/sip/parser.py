"""From bytes to messages (RFC 3261 sections 7 and 18.3).

``parse`` takes one datagram or one framed stream message. Framing is strict: the
start line must be exact, header lines end in CRLF, and Content-Length (when given)
must fit the data. The headers a proxy routes on are validated at once; every other
header is kept as received.
"""

from __future__ import annotations

from typing import Final

from . import _abnf, _fast
from .errors import ParseError
from .message import COMPACT_FORMS, HeaderField, Request, Response
from .uri import SipUri, parse_uri

_token_fullmatch: Final = _abnf.token_re.fullmatch


def parse(data: bytes) -> Request | Response:
    """Parse one message. Bytes after the body that Content-Length gives are ignored
    (a datagram); a Content-Length longer than the data is an error; without one the
    body is the rest of the data."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ParseError("no empty line after the header fields")
    head = data[:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    fields = _parse_fields(lines)
    try:
        message = _start(lines[0], fields)
        message.validate()
        body_start = end + 4
        length = message.content_length
        if length is None:
            message.body = data[body_start:]
            message._raw = data
        else:
            if body_start + length > len(data):
                raise ParseError(
                    f"Content-Length {length} is longer than the {len(data) - body_start} bytes of body",
                    header="Content-Length",
                )
            message.body = data[body_start : body_start + length]
            message._raw = data[: body_start + length]
    except ParseError as error:
        error.fields = [(f.key, f.value) for f in fields]
        raise
    return message


# message-header = header-name HCOLON header-value ; HCOLON = *( SP / HTAB ) ":" SWS
# The text before ":" of names already seen, with its canonical key: most messages
# repeat a few dozen names, so a dict lookup replaces the token check.
_known_names: Final[dict[str, tuple[str, str]]] = {}
_KNOWN_NAMES_MAX: Final = 4096


def _parse_fields(lines: list[str]) -> list[HeaderField]:
    # A continuation line (folding) starts with SP or HTAB: its text before ":" is never
    # a known name (the careful pass stores only names it read at a line's start), so it
    # sends the whole message to the careful pass, as any line of an unknown name does.
    flat = _fast.fields(lines, _known_names)
    if flat is None:
        return _parse_fields_carefully(lines)
    fields: list[HeaderField] = []
    for index in range(1, len(lines)):
        at = 3 * index - 3
        fields.append(HeaderField(flat[at], flat[at + 1], flat[at + 2], lines[index]))
    return fields


def _parse_fields_carefully(lines: list[str]) -> list[HeaderField]:
    fields: list[HeaderField] = []
    folded = any(line[:1] in (" ", "\t") for line in lines[1:])
    groups = _unfold(lines) if folded else [(line, line) for line in lines[1:]]
    for raw, text in groups:
        colon = text.find(":")
        if colon <= 0:
            raise ParseError(f"header line without a name and ':': {text[:40]!r}")
        name = text[:colon].rstrip(" \t")
        if not _token_fullmatch(name):
            raise ParseError(f"malformed header name {name[:40]!r}")
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_known_names) < _KNOWN_NAMES_MAX:
            _known_names[text[:colon]] = (key, name)
        fields.append(HeaderField(key, name, text[colon + 1 :].strip(" \t"), raw))
    return fields


def _unfold(lines: list[str]) -> list[tuple[str, str]]:
    """Join continuation lines: LWS with CRLF reads as one SP (RFC 3261 section 7.3.1)."""
    groups: list[tuple[list[str], list[str]]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not groups:
                raise ParseError("continuation line before the first header field")
            groups[-1][0].append(line)
            groups[-1][1].append(line.strip(" \t"))
        else:
            groups.append(([line], [line.rstrip(" \t")]))
    return [("\r\n".join(raw), " ".join(parts)) for raw, parts in groups]


def _start(line: str, fields: list[HeaderField]) -> Request | Response:
    if line[:4].upper() == "SIP/":
        return _status_line(line, fields)
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError("malformed Request-Line: expected 'Method SP Request-URI SP SIP/2.0'")
    method, uri_text, version = parts
    if method not in _abnf.KNOWN_METHODS and not _token_fullmatch(method):
        raise ParseError(f"malformed method {method[:40]!r}")
    _check_version(version)
    uri = parse_uri(uri_text, what="Request-URI")
    if isinstance(uri, SipUri) and uri.headers is not None:
        raise ParseError("Request-URI: headers are not allowed here", header="Request-URI")
    return Request(method, uri, fields)


def _status_line(line: str, fields: list[HeaderField]) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise ParseError("malformed Status-Line")
    _check_version(parts[0])
    if not _abnf.status_code_re.fullmatch(parts[1]):
        raise ParseError(f"malformed status code {parts[1][:20]!r}")
    return Response(int(parts[1]), parts[2] if len(parts) == 3 else "", fields)


def _check_version(text: str) -> None:
    if text == "SIP/2.0":  # nearly always: no regex
        return
    m = _abnf.sip_version_re.fullmatch(text)
    if not m:
        raise ParseError(f"malformed SIP-Version {text[:20]!r}")
    if (m.group(1), m.group(2)) != ("2", "0"):
        raise ParseError(f"SIP version {text} is not supported", status=505)
