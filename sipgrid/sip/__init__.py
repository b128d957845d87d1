"""The sans-IO SIP core of sipgrid: bytes and time in; messages, bytes and deadlines out.

Nothing here opens a socket, reads a clock or imports asyncio or grpc. At import the package
chooses its modules: those compiled by mypyc in _compiled/ when they were built from the
sources as they are, else the pure Python ones beside this file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path


def _compiled() -> list[str]:
    """The folder of the modules compiled by mypyc (`make compiled`), when it holds a build
    of the sources as they are now; otherwise none, and the pure Python modules run.
    SIPGRID_COMPILED=0 turns the compiled modules off."""
    here = Path(__file__).parent
    folder = here / "_compiled"
    if os.environ.get("SIPGRID_COMPILED", "1") == "0":
        return []
    try:
        built = dict(line.split() for line in (folder / "MANIFEST").read_text().splitlines())
        current = {
            name: hashlib.sha256((here / f"{name}.py").read_bytes()).hexdigest() for name in built
        }
    except (OSError, ValueError):
        return []
    if current != built:
        logging.getLogger("sipgrid").warning(
            "sipgrid/sip/_compiled was built from older sources: the pure Python modules run "
            "(make compiled builds them again)"
        )
        return []
    return [str(folder)]


# first on the package's path: `import sipgrid.sip.parser` finds the compiled module
__path__[:0] = _compiled()

from . import parser as _parser  # noqa: E402
from .builders import (  # noqa: E402
    REASONS,
    build_ack,
    build_cancel,
    error_response,
    make_response,
    stable_tag,
)
from .digest import Challenge, Credentials, NonceState  # noqa: E402
from .errors import LocalProtocolError, ParseError, SipError  # noqa: E402
from .framing import PONG, KeepAlivePing, StreamFramer  # noqa: E402
from .headers import CSeq, NameAddr, Via  # noqa: E402
from .locate import Target, default_port, host_of, is_ip, locate  # noqa: E402
from .message import HeaderField, Message, Request, Response, canonical_name  # noqa: E402
from .parser import parse  # noqa: E402
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri  # noqa: E402

# the compiled modules run (an extension module, not parser.py, was imported)
COMPILED = Path(_parser.__file__ or "").suffix != ".py"

__all__ = [
    "COMPILED",
    "PONG",
    "REASONS",
    "AbsoluteUri",
    "CSeq",
    "Challenge",
    "Credentials",
    "HeaderField",
    "KeepAlivePing",
    "LocalProtocolError",
    "Message",
    "NameAddr",
    "NonceState",
    "ParseError",
    "Request",
    "Response",
    "SipError",
    "SipUri",
    "StreamFramer",
    "Target",
    "TelUri",
    "Uri",
    "Via",
    "build_ack",
    "build_cancel",
    "canonical_name",
    "default_port",
    "error_response",
    "host_of",
    "is_ip",
    "locate",
    "make_response",
    "parse",
    "parse_uri",
    "stable_tag",
]
