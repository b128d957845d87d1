"""Request checks that come after parsing: a proxy's (RFC 3261 section 16.3) and a
UAS's (section 8.2). Each returns the error response to send, or None to go on."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from .builders import make_response
from .message import Request, Response
from .uri import SipUri, TelUri

ROUTABLE_SCHEMES: Final = (SipUri, TelUri)


def check_proxy_request(request: Request, supported: Collection[str] = ()) -> Response | None:
    """Section 16.3 steps 2, 3 and 5: URI scheme (416), Max-Forwards (483), Proxy-Require (420).

    Max-Forwards 0 on an OPTIONS addressed to the proxy itself is the caller's to
    answer (16.3 step 3 lets a proxy respond to it) before calling this.
    """
    if not isinstance(request.uri, ROUTABLE_SCHEMES):
        return make_response(request, 416)
    if request.max_forwards == 0 and request.method != "ACK":
        return make_response(request, 483)
    unsupported = [tag for tag in request.tokens("proxy-require") if tag not in supported]
    if unsupported:
        return make_response(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
    return None


def check_uas_request(
    request: Request,
    supported: Collection[str] = (),
    accept: Collection[str] = ("application/sdp",),
) -> Response | None:
    """Section 8.2.2 and 8.2.3: URI scheme (416), Require (420), body type (415), and
    an Accept that allows no type we answer with (406)."""
    if not isinstance(request.uri, ROUTABLE_SCHEMES):
        return make_response(request, 416)
    if request.method not in ("ACK", "CANCEL"):
        unsupported = [tag for tag in request.tokens("require") if tag not in supported]
        if unsupported:
            return make_response(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
    if (
        request.body
        and request.content_type not in accept
        and request.content_type != "multipart/mixed"
    ):
        return make_response(request, 415, headers=[("Accept", ", ".join(accept))])
    wanted = [v.split(";")[0].strip().lower() for v in request.values("accept")]
    if wanted and request.method == "INVITE" and not any(_accepts(w, accept) for w in wanted):
        return make_response(request, 406, headers=[("Accept", ", ".join(accept))])
    return None


def _accepts(pattern: str, types: Collection[str]) -> bool:
    if pattern in ("*/*", ""):
        return True
    if pattern.endswith("/*"):
        return any(t.startswith(pattern[:-1]) for t in types)
    return pattern in types
