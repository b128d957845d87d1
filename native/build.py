"""Compile the SIP core (sipgrid/sip) with mypyc into sipgrid/sip/_compiled/.

Run by `make compiled` (part of `make install`). The pure Python modules stay where they
are and keep working: sipgrid/sip/__init__.py puts _compiled/ first on the package's path
only when its MANIFEST names the sources' current hashes, so an edited source is never
shadowed by a stale build, and SIPGRID_COMPILED=0 turns the compiled modules off.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sipgrid" / "sip"
TARGET = PACKAGE / "_compiled"
# every module of the core but the package's __init__ (which chooses) and locate (small,
# and off the hot path)
MODULES = (
    "_abnf",
    "errors",
    "uri",
    "headers",
    "digest",
    "message",
    "parser",
    "framing",
    "builders",
    "checks",
    "transaction",
)


def digest(name: str) -> str:
    return hashlib.sha256((PACKAGE / f"{name}.py").read_bytes()).hexdigest()


def main() -> int:
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    hashes = {name: digest(name) for name in MODULES}  # of what is compiled, edited or not
    work = Path(tempfile.mkdtemp(prefix="sipgrid-mypyc-"))
    try:
        # mypy's settings for the core alone: the project's (pyproject.toml) name modules
        # outside it, which mypy notes as unused, and mypyc takes any note as a failure
        config = work / "mypy.ini"
        config.write_text("[mypy]\nstrict = True\n")
        extensions = mypycify(
            ["--config-file", str(config), *(str(PACKAGE / f"{name}.py") for name in MODULES)],
            opt_level="3",
            group_name="sipgrid.sip.compiled",  # its shared library lands in the package too
            target_dir=str(work / "c"),
        )
        setup(
            name="sipgrid-compiled",
            ext_modules=extensions,
            script_args=[
                "--quiet",
                "build_ext",
                "--build-lib",
                str(work / "lib"),
                "--build-temp",
                str(work / "temp"),
            ],
        )
        built = sorted((work / "lib" / "sipgrid" / "sip").glob("*.so"))
        shutil.rmtree(TARGET, ignore_errors=True)
        TARGET.mkdir()
        for library in built:
            shutil.copy2(library, TARGET / library.name)
        (TARGET / "MANIFEST").write_text("".join(f"{n} {h}\n" for n, h in hashes.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"compiled {len(MODULES)} modules of sipgrid/sip into {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
