"""Framing SIP on stream transports: TCP, TLS and WebSocket-less streams (RFC 3261
section 18.3, RFC 5626 section 4.4.1 keep-alives).

A :class:`StreamFramer` takes bytes as they arrive and hands out whole messages and
keep-alive pings. Content-Length is mandatory on a stream; after a ParseError the
stream is out of step and the connection should be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import ParseError
from .message import Request, Response
from .parser import parse

# message-header "Content-Length" / "l" HCOLON 1*DIGIT, anywhere in the head
_content_length_re: Final = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE
)

PONG: Final = b"\r\n"


def _readable_fields(head: bytes) -> list[tuple[str, str]]:
    """The header fields of a head that cannot be framed, for the error response."""
    try:
        return [(f.key, f.value) for f in parse(head).fields]
    except ParseError as error:
        return error.fields


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A CRLF CRLF ping; answer it with :data:`PONG` (a single CRLF)."""


class StreamFramer:
    """Split a byte stream into SIP messages."""

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_event(self) -> Request | Response | KeepAlivePing | None:
        """The next whole message or ping, or None until more bytes arrive."""
        buf = self._buffer
        while buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                return KeepAlivePing()
            if len(buf) < 4 and buf == b"\r\n\r"[: len(buf)]:
                return None  # may still become a ping
            del buf[:2]  # a pong, or CRLF between messages (RFC 3261 section 7.5)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_message_size:
                raise ParseError("message too large", status=513)
            return None
        m = _content_length_re.search(buf, 0, end + 2)
        if m is None:
            raise ParseError(
                "Content-Length is required on stream transports", header="Content-Length"
            )
        total = end + 4 + int(m.group(1))
        if total > self.max_message_size:
            raise ParseError("message too large", status=513)
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        return parse(data)
