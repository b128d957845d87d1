"""Building messages from other messages: responses (RFC 3261 section 8.2.6), the ACK
for a non-2xx final response (section 17.1.1.3) and CANCEL (section 9.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from .errors import ParseError
from .message import HeaderField, Request, Response, canonical_name, display_name

REASONS: Final = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def stable_tag(request: Request) -> str:
    """A To tag for our answers to this request: the same for its retransmissions and in
    every process (RFC 3261 section 8.2.6.2 asks for one on every non-100 answer)."""
    seed = f"{request.call_id}|{request.cseq.seq}|{request.top_via.branch}"
    return hashlib.sha1(seed.encode()).hexdigest()[:10]


# Copied from request to response, in this order (RFC 3261 section 8.2.6.2).
_COPIED: Final = ("via", "from", "to", "call-id", "cseq")
_ORDER: Final = {key: place for place, key in enumerate(_COPIED)}
_TO: Final = 2


def _order(field: HeaderField) -> int:
    return _ORDER[field.key]


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, object]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request``: Via, From, To, Call-ID and CSeq copied byte-exact, a To
    tag added when given and the To has none, then ``headers`` and Content-Length."""
    tag = to_tag if to_tag is not None and status > 100 and request.to.tag is None else None
    fields: list[HeaderField] = []
    last = 0
    ordered = True  # as nearly every client writes them: then no sort
    for f in request.fields:
        place = _ORDER.get(f.key)
        if place is not None:
            if place < last:
                ordered = False
            last = place
            if tag is not None and place == _TO:
                # The To's own parameters come last, after its URI in brackets or after a
                # URI without any (RFC 3261 section 20): the tag goes at the end of its text.
                fields.append(HeaderField("to", f.name, f"{f.value};tag={tag}"))
            else:  # a field is never changed in place: the request's own is shared
                fields.append(f)
    if not ordered:
        fields.sort(key=_order)
    # the extra headers as Message.add writes them, before the response exists: added to
    # it one by one, each would clear a cache that is still empty
    has_length = False
    for name, value in headers:
        key = canonical_name(name)
        has_length = has_length or key == "content-length"
        fields.append(HeaderField(key, display_name(key) if name.islower() else name, str(value)))
    response = Response(status, reason if reason is not None else REASONS.get(status, ""), fields)
    if has_length:
        response.set_body(body)
    else:
        response.body = body
        response.fields.append(HeaderField("content-length", "Content-Length", str(len(body))))
    return response


def error_response(error: ParseError, to_tag: str | None = None) -> Response:
    """The response to a request that failed to parse: its status and reason, with the
    Via, From, To, Call-ID and CSeq lines that could be read."""
    fields = [HeaderField(k, display_name(k), v) for k, v in error.fields if k in _COPIED]
    fields.sort(key=lambda f: _COPIED.index(f.key))
    response = Response(
        error.status, error.reason.replace("\r", " ").replace("\n", " ")[:200], fields
    )
    if to_tag is not None and not any(
        f.key == "to" and ";tag=" in f.value.replace(" ", "") for f in fields
    ):
        for f in response.fields:
            if f.key == "to":
                f.value += f";tag={to_tag}"
    response.set("content-length", 0)
    return response


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 300-699 to ``invite``.

    Same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE; To from the
    response; the INVITE's Route set.
    """
    fields = [HeaderField("via", "Via", str(invite.top_via))]
    fields += _copy(invite, "route")
    fields += _copy(invite, "from")
    fields += _copy(response, "to")
    fields += _copy(invite, "call-id")
    fields.append(HeaderField("cseq", "CSeq", f"{invite.cseq.seq} ACK"))
    fields.append(HeaderField("max-forwards", "Max-Forwards", "70"))
    fields.append(HeaderField("content-length", "Content-Length", "0"))
    return Request("ACK", invite.uri, fields)


def build_cancel(invite: Request) -> Request:
    """A CANCEL for a pending ``invite`` (RFC 3261 section 9.1)."""
    fields = [HeaderField("via", "Via", str(invite.top_via))]
    fields += _copy(invite, "route")
    fields += _copy(invite, "from")
    fields += _copy(invite, "to")
    fields += _copy(invite, "call-id")
    fields.append(HeaderField("cseq", "CSeq", f"{invite.cseq.seq} CANCEL"))
    fields.append(HeaderField("max-forwards", "Max-Forwards", "70"))
    fields.append(HeaderField("content-length", "Content-Length", "0"))
    return Request("CANCEL", invite.uri, fields)


def _copy(message: Request | Response, key: str) -> list[HeaderField]:
    return [HeaderField(f.key, f.name, f.value, f.raw) for f in message.fields if f.key == key]
