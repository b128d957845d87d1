"""The one error hierarchy of the SIP core.

Two kinds, as in h11: a *remote* error (the peer sent something we cannot accept)
carries the response a server should send; a *local* error means the caller used
the API wrongly and is a bug on our side.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error raised by sipgrid.sip."""


class ParseError(SipError):
    """A message from the network is malformed.

    ``status`` and ``reason`` are the response a server should send back (RFC 3261
    section 21.4: 400 unless a more specific code applies). ``header`` names the
    faulty header field, or is None for the start line and framing. A response that
    fails to parse is dropped, never answered.
    """

    def __init__(self, reason: str, *, status: int = 400, header: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.header = header
        # Header fields read before the fault, as (canonical name, value); they let a
        # server copy Via, From, To, Call-ID and CSeq into its error response.
        self.fields: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status={self.status}, header={self.header!r})"


class LocalProtocolError(SipError):
    """The API was misused: an illegal transaction transition, a bad argument."""
