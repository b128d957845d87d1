"""Fuzz targets: what must never raise anything but a ParseError, whatever bytes arrive.

``fast``: sipgrid/sip/_fast.c's readers give what their reference, _fast.py, gives (the
reference is the Python that atheris follows; the C must neither crash nor differ).

``parser``: parse, read every header a proxy reads, serialize. ``edgeport``: the
EdgePort's core fed datagrams and stream messages, with a processor that forwards or
answers, timers advanced: no input may raise. Run by atheris (tests/fuzz/run.py).
"""

from __future__ import annotations

import contextlib

from sipgrid.api.types import MessageResponse, NetInterface, Transport
from sipgrid.services.edgeport.config import DEFAULT_METHODS
from sipgrid.services.edgeport.core import CoreSettings, EdgePortCore, Process, Resolve
from sipgrid.sip import ParseError, Request, make_response, parse
from tests.sip.helpers import fast_modules

PEER = NetInterface("127.0.0.1", 7001, Transport.UDP)
STREAM = NetInterface("127.0.0.1", 40000, Transport.TCP)
CALLEE = NetInterface("127.0.0.1", 7002, Transport.UDP)


def parser(data: bytes) -> None:
    try:
        message = parse(data)
    except ParseError:
        return
    for read in (
        lambda: message.vias,
        lambda: message.from_,
        lambda: message.to,
        lambda: message.call_id,
        lambda: message.cseq,
        lambda: message.max_forwards,
        lambda: message.content_length,
        lambda: message.routes,
        lambda: message.record_routes,
        lambda: message.contacts,
        lambda: message.expires,
        lambda: message.authorizations,
        lambda: message.proxy_authorizations,
        lambda: message.www_authenticates,
    ):
        with contextlib.suppress(ParseError):
            read()
    copy = message.copy()
    assert copy.serialize() == message.serialize()


def edgeport(data: bytes) -> None:
    core = EdgePortCore(
        CoreSettings(
            ref="fuzz",
            listening_points=[
                NetInterface("127.0.0.1", 5060, Transport.UDP),
                NetInterface("127.0.0.1", 5060, Transport.TCP),
            ],
            methods=frozenset(DEFAULT_METHODS),
            max_message_size=4096,
        )
    )
    now = 1000.0
    pending = core.receive_datagram(data, PEER, now)
    try:
        message = parse(data)
    except ParseError:
        message = None
    if message is not None:
        pending += core.receive_message(message, STREAM, now)
    for step in range(50):
        if not pending:
            break
        action = pending.pop(0)
        if isinstance(action, Process):
            request = action.request.message
            if isinstance(request, Request) and step % 2:
                answer = MessageResponse(make_response(request, 200, to_tag="f"))
            else:
                answer = MessageResponse(request, destination=CALLEE)
            pending += core.processor_answered(action.job, answer, now)
        elif isinstance(action, Resolve):
            pending += core.resolved(action.job, [CALLEE], now)
    for _ in range(5):
        now += 40.0
        core.handle_timers(now)


FAST_REFERENCE, FAST_C = fast_modules()


def fast(data: bytes) -> None:
    if FAST_C is None:
        raise RuntimeError("no build of sipgrid/sip/_fast.c: make compiled")
    text = data.decode("utf-8", "surrogateescape")
    for name in ("header_params", "digest_params", "sip_uri"):
        assert getattr(FAST_C, name)(text) == getattr(FAST_REFERENCE, name)(text), name
    lines = text.split("\r\n")
    # every other line's name known, so that both a whole match and a miss are read
    known = {line.partition(":")[0]: ("k", "n") for line in lines[1::2]}
    assert FAST_C.fields(lines, known) == FAST_REFERENCE.fields(lines, known)


TARGETS = {"parser": parser, "edgeport": edgeport, "fast": fast}
