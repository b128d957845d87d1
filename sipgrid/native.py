"""Which modules run compiled: those mypyc built into sipgrid/_compiled/ (`make compiled`,
native/build.py), when the build is whole and was made from the sources as they are.

The build is one unit: the SIP core and the hot modules of the EdgePort and of Connect,
compiled together so that they call each other natively. It runs whole or not at all. A
module edited since the build, a file missing from it, or SIPGRID_COMPILED=0, and every
module runs as the pure Python beside it (a compiled module beside a pure one of the same
build would see two different classes for one name).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
FOLDER = PACKAGE / "_compiled"
MANIFEST = FOLDER / "MANIFEST"
GROUP = "sipgrid.compiled__mypyc"  # the shared library every compiled module calls into


def source(module: str) -> Path:
    """The pure Python file of a module of this package (``sipgrid.sip.parser``)."""
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def fingerprint(module: str) -> str:
    """The hash of a module's sources: its Python file, and the C file beside it when the
    build makes the module from that (sipgrid/sip/_fast.c)."""
    path = source(module)
    c_file = path.with_suffix(".c")
    text = path.read_bytes() + (c_file.read_bytes() if c_file.is_file() else b"")
    return hashlib.sha256(text).hexdigest()


def library(module: str) -> Path | None:
    """The compiled file of a module of this package, if the build holds one."""
    stem = FOLDER.joinpath(*module.split(".")[1:])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def built() -> dict[str, Path]:
    """The compiled file of each module of the build, when it can run; else nothing."""
    if os.environ.get("SIPGRID_COMPILED", "1") == "0":
        return {}
    try:
        manifest = dict(line.split() for line in MANIFEST.read_text().splitlines())
        current = {name: fingerprint(name) for name in manifest}
    except (OSError, ValueError):
        return {}  # never built (no C compiler), or a source gone
    files = {name: library(name) for name in [*manifest, GROUP]}
    problem = ""
    if current != manifest:
        problem = "was built from older sources"
    elif None in files.values():
        problem = "lacks " + ", ".join(name for name, file in files.items() if file is None)
    if problem:
        logging.getLogger("sipgrid").warning(
            "sipgrid/_compiled %s: the pure Python modules run (make compiled builds them again)",
            problem,
        )
        return {}
    return {name: file for name, file in files.items() if file is not None}


class CompiledModules(importlib.abc.MetaPathFinder):
    """Finds the modules of the build in sipgrid/_compiled/ before their sources."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def install() -> None:
    """Put the build's finder first, once; importing ``sipgrid`` does it."""
    if any(isinstance(finder, CompiledModules) for finder in sys.meta_path):
        return
    files = built()
    if files:
        sys.meta_path.insert(0, CompiledModules(files))
