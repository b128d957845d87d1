"""Compile the SIP core and the hot path's modules with mypyc into sipgrid/_compiled/.

Run by `make compiled` (part of `make install`). The pure Python modules stay where they
are and keep working: sipgrid/native.py runs the compiled ones only when the MANIFEST names
the sources' current hashes and every file of the build is there, so an edited source is
never shadowed by a stale build; SIPGRID_COMPILED=0 turns the compiled modules off.

The modules are compiled as one group: a call from one to another is a C call, and the
classes of the SIP core are C structs to the EdgePort's core and to Connect, not Python
objects looked up by name. (The EdgePort's core compiled in a group of its own saved about
5 us of a REGISTER exchange's 115 in bench/cold.py, hot; with Connect, in the SIP core's
group, about 22: bench/README.md.)

SIPGRID_PGO=1 builds twice (about six minutes where one build takes two): first with
gcc's counters in (``-fprofile-generate``), then runs native/train.py on that build (a
server's REGISTER exchanges and calls, in one process), then builds again from what the
counters saw (``-fprofile-use``): hot functions together, cold paths apart, inlining
where the training went. Session 38 measured it (bench/README.md): a REGISTER exchange
3.5 % fewer instructions and 10 % fewer first-level instruction cache misses (callgrind's
simulation), a call 1 % and 6 %. `make bench` and the image build that way; `make
install` does not, to keep a fresh checkout's `make test` short.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sipgrid"
TARGET = PACKAGE / "_compiled"
# every module of the SIP core but its __init__;
# then what every message passes through: the domain types (sipgrid.api.types: compiled
# alone they gained nothing measurable in session 12, as their dataclasses' __init__ stayed
# interpreted; written out, they are compiled too, session 13), the in-memory Location
# (1.6 % of a REGISTER exchange's instructions, bench.instructions), the EdgePort's sans-IO
# core, the part of its shell every datagram passes through (carrier.py: 7 % of a call's
# instructions, session 18; the rest of the shell broke compiled, as mypyc checks types at
# run time and uvloop does not always give what typeshed says) and Connect's request
# handling. Connect's routing gained nothing measurable compiled (session 12, by time).
# Session 19 added what a REGISTER still ran interpreted, each call from compiled code
# into the interpreter: Connect's index of resources (split from the pydantic models of
# resources.py), the guard's ban check, the persistent Location's wrapper and locate();
# together 4.4 % of a REGISTER exchange's instructions and 2.0 % of a call's.
# Session 36 added what each crossing of the distributed wiring ran interpreted: the
# conversions to protobuf and back, the frames, the streams' clients and servers, the
# start of a coroutine, and the count of calls served (10 % of a call's instructions over
# the EdgePort, Connect and Location, bench/README.md).
MODULES = (
    *(
        f"sipgrid.sip.{name}"
        for name in (
            "_abnf",
            "errors",
            "uri",
            "headers",
            "digest",
            "message",
            "parser",
            "framing",
            "locate",
            "builders",
            "checks",
            "transaction",
        )
    ),
    "sipgrid.api.types",
    "sipgrid.api.convert",
    "sipgrid.services.location.service",
    "sipgrid.services.location.persistent",
    "sipgrid.services.edgeport.core",
    "sipgrid.services.edgeport.carrier",
    "sipgrid.services.frames",
    "sipgrid.services.grpc_clients",
    "sipgrid.services.grpc_servers",
    "sipgrid.services.eager",
    "sipgrid.services.metrics",
    "sipgrid.services.connect.context",
    "sipgrid.services.connect.index",
    "sipgrid.services.connect.auth",
    "sipgrid.services.connect.guard",
    "sipgrid.services.connect.registrar",
    "sipgrid.services.connect.processor",
)
# modules written in C, beside the reference each one runs in place of (session 34): the
# readers of what every message holds (sipgrid/sip/_fast.py says why)
C_MODULES = ("sipgrid.sip._fast",)
# mypy's settings for the build, not the project's (pyproject.toml): those name modules
# this build does not import, which mypy notes as unused, and mypyc takes any note as a
# failure. `make lint` checks the types with the project's.
MYPY = """[mypy]
python_version = 3.11
plugins = pydantic.mypy
[mypy-sipgrid.pb.*]
ignore_errors = True
[mypy-grpc_health.*]
ignore_missing_imports = True
"""


def source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def fingerprints(modules: tuple[str, ...]) -> dict[str, str]:
    """Each module's hash as sipgrid/native.py computes it when it checks the MANIFEST (its
    .py, and the .c beside it if any): that file loaded alone, as importing the package
    would put a build, maybe a stale one, in place first."""
    spec = importlib.util.spec_from_file_location("sipgrid_native", PACKAGE / "native.py")
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    return {name: native.fingerprint(name) for name in modules}


def main() -> int:
    from mypyc.build import mypycify
    from setuptools import Extension  # type: ignore[import-untyped]

    hashes = fingerprints((*MODULES, *C_MODULES))  # of what is compiled, edited or not
    pgo = guided()
    work = Path(tempfile.mkdtemp(prefix="sipgrid-mypyc-"))
    try:
        config = work / "mypy.ini"
        config.write_text(MYPY)
        extensions = mypycify(
            ["--config-file", str(config), *(str(source(name)) for name in MODULES)],
            opt_level="3",
            group_name="sipgrid.compiled",  # its shared library: sipgrid.compiled__mypyc
            target_dir=str(work / "c"),
        )
        extensions += [
            Extension(name, [str(source(name).with_suffix(".c"))], extra_compile_args=["-O2"])
            for name in C_MODULES
        ]
        profile = work / "profile"
        if not pgo:
            build(extensions, work, hashes)
        else:
            # gcc names each counts file after its object's path: both builds in ``work``
            build(
                extensions,
                work,
                hashes,
                [f"-fprofile-generate={profile}", "-fprofile-update=single"],
            )
            env = {k: v for k, v in os.environ.items() if k != "SIPGRID_COMPILED"}
            subprocess.run([sys.executable, str(ROOT / "native" / "train.py")], check=True, env=env)
            if not any(profile.rglob("*.gcda")):
                raise SystemExit(
                    "native/build.py: the training left no profile (gcc's .gcda files)"
                )
            build(
                extensions,
                work,
                hashes,
                [f"-fprofile-use={profile}", "-fprofile-partial-training", "-Wno-missing-profile"],
            )
    except BaseException:
        shutil.rmtree(TARGET, ignore_errors=True)  # never an instrumented build left in use
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if pgo:  # what `make bench` measures, and the image runs
        (TARGET / "GUIDED").write_text("built with a profile of native/train.py\n")
    how = "profile-guided" if pgo else "without a profile (SIPGRID_PGO=1 for one, with gcc)"
    print(
        f"compiled {len(MODULES) + len(C_MODULES)} modules into {TARGET.relative_to(ROOT)}, {how}"
    )
    return 0


def guided() -> bool:
    """A profile-guided build (two builds, native/train.py between them) when
    SIPGRID_PGO=1 and the compiler is gcc, whose options this uses."""
    if os.environ.get("SIPGRID_PGO", "0") != "1":
        return False
    compiler = os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "cc")
    try:
        version = subprocess.run(
            [compiler.split()[0], "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return "gcc" in version.lower() or "free software foundation" in version.lower()


def build(
    extensions: list[Any], work: Path, hashes: dict[str, str], flags: Sequence[str] = ()
) -> None:
    """Compile every extension with ``flags`` too (all of them again: ``--force``), then
    put the libraries where sipgrid/native.py looks and write the MANIFEST."""
    from setuptools import setup

    for extension in extensions:
        base = getattr(extension, "_sipgrid_args", None)
        if base is None:
            base = extension._sipgrid_args = (
                list(extension.extra_compile_args),
                list(extension.extra_link_args),
            )
        extension.extra_compile_args = [*base[0], *flags]
        extension.extra_link_args = [*base[1], *flags]
    setup(
        name="sipgrid-compiled",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--force",
            "--build-lib",
            str(work / "lib"),
            "--build-temp",
            str(work / "temp"),
        ],
    )
    # each module's file where sipgrid/native.py looks: _compiled/sip/parser.*.so
    # for sipgrid.sip.parser, _compiled/compiled__mypyc.*.so for the shared library
    built = work / "lib" / "sipgrid"
    shutil.rmtree(TARGET, ignore_errors=True)
    for library in sorted(built.rglob("*.so")):
        copy = TARGET / library.relative_to(built)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, copy)
    (TARGET / "MANIFEST").write_text("".join(f"{n} {h}\n" for n, h in hashes.items()))


if __name__ == "__main__":
    sys.exit(main())
