"""The sans-IO SIP core of sipgrid: bytes and time in; messages, bytes and deadlines out.

Nothing here opens a socket, reads a clock or imports asyncio or grpc. Its modules run
compiled by mypyc when sipgrid/_compiled/ holds a build of the sources as they are
(sipgrid/native.py chooses), else as the pure Python beside this file.
"""

from __future__ import annotations

from pathlib import Path

from . import parser as _parser
from .builders import (
    REASONS,
    build_ack,
    build_cancel,
    error_response,
    make_response,
    stable_tag,
)
from .digest import Challenge, Credentials, NonceState
from .errors import LocalProtocolError, ParseError, SipError
from .framing import PONG, KeepAlivePing, StreamFramer
from .headers import CSeq, NameAddr, Via
from .locate import Target, default_port, host_of, is_ip, locate
from .message import HeaderField, Message, Request, Response, canonical_name
from .parser import parse
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

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
