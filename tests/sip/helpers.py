"""Helpers shared by the SIP core tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from sipgrid import native
from sipgrid.sip import Request, Response, parse

# ../shared/testdata beside the project; SIPGRID_SHARED names it when the tests run from a
# copy of the project elsewhere (make mutation runs them in mutants/)
SHARED = Path(os.environ.get("SIPGRID_SHARED") or Path(__file__).resolve().parents[3] / "shared")
TORTURE_DIR = SHARED / "testdata" / "rfc4475"


def load_file(name: str, file: Path) -> ModuleType:
    """A module loaded from ``file`` under ``name``, whatever the package runs."""
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fast_modules() -> tuple[ModuleType, ModuleType | None]:
    """sipgrid/sip/_fast.py, and the build of _fast.c if there is one (make compiled)."""
    name = "sipgrid.sip._fast"
    library = native.library(name)
    return (
        load_file("fast_reference", native.source(name)),
        None if library is None else load_file(name, library),
    )


def torture(name: str) -> bytes:
    path = TORTURE_DIR / f"{name}.dat"
    if not path.exists():
        raise FileNotFoundError(
            f"RFC 4475 test data missing: {path} (../shared/testdata must sit beside the project)"
        )
    return path.read_bytes()


def msg(*lines: str, body: str = "") -> bytes:
    """A message from header lines, CRLF-joined, with the body appended."""
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


INVITE = msg(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    'To: "Bob" <sip:bob@biloxi.example.com>',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    "Content-Length: 4",
    body="v=0\n",
)


def request(data: bytes = INVITE) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def response(data: bytes) -> Response:
    message = parse(data)
    assert isinstance(message, Response)
    return message
