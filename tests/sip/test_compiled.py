"""The modules compiled by mypyc (`make compiled`, native/build.py: the SIP core, the
EdgePort's core and Connect's request handling) run when their build is whole and was made
from the sources as they are, and not otherwise; SIPGRID_COMPILED=0 turns them off. `make
test` runs the whole suite on the compiled modules and the cores' tests again on the pure
Python ones."""

from __future__ import annotations

import ast
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

import sipgrid.sip
from sipgrid import native

HOT_PATH = [
    "sipgrid.sip.parser",
    "sipgrid.services.edgeport.core",
    "sipgrid.services.edgeport.carrier",
    "sipgrid.services.connect.processor",
    "sipgrid.services.connect.index",
]


def _built() -> list[str]:
    return [line.split()[0] for line in native.MANIFEST.read_text().splitlines()]


def test_the_modules_that_run_are_the_ones_asked_for() -> None:
    modules = _built() if native.MANIFEST.exists() else HOT_PATH
    files = [Path(import_module(name).__file__ or "") for name in modules]
    if native.MANIFEST.exists() and os.environ.get("SIPGRID_COMPILED") != "0":
        assert set(HOT_PATH) <= set(modules)
        assert sipgrid.sip.COMPILED
        assert [f.name for f in files if f.suffix == ".py"] == []
    else:
        assert not sipgrid.sip.COMPILED
        assert [f.suffix for f in files] == [".py"] * len(files)


PROBE = (
    "import sipgrid.sip as s, sipgrid.services.edgeport.core as c; "
    "print(s.COMPILED, c.__file__.endswith('.py'))"
)


def _copy(tmp_path: Path) -> tuple[Path, Callable[[], subprocess.CompletedProcess[str]]]:
    """The package copied whole, and a function that imports it in a new interpreter."""
    copy = tmp_path / "sipgrid"
    shutil.copytree(native.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "SIPGRID_COMPILED"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )

    return copy, run


def test_a_build_of_older_sources_is_not_run(tmp_path: Path) -> None:
    if not native.MANIFEST.exists():
        return  # nothing compiled here (no C compiler): the test above checks the pure modules
    copy, run = _copy(tmp_path)
    assert run().stdout.split() == ["True", "False"]  # the copy's build matches its sources
    with (copy / "services" / "edgeport" / "core.py").open("a") as source:
        source.write("\n# an edit made after the build\n")
    stale = run()
    assert stale.stdout.split() == ["False", "True"]  # none compiled, the SIP core's neither
    assert "built from older sources" in stale.stderr


def test_a_build_with_a_file_missing_is_not_run(tmp_path: Path) -> None:
    if not native.MANIFEST.exists():
        return
    copy, run = _copy(tmp_path)
    for library in (copy / "_compiled" / "services" / "connect").glob("registrar.*"):
        library.unlink()
    partial = run()
    assert partial.stdout.split() == ["False", "True"]
    assert "lacks sipgrid.services.connect.registrar" in partial.stderr


# Module-level names of the compiled modules that are not Final, and why: type aliases and
# type variables (never read at run time on the hot path), and one value that is rebound.
NOT_FINAL = {
    "sipgrid.sip.uri": {"Params", "V", "Uri"},
    "sipgrid.sip.headers": {"Params"},
    "sipgrid.sip.message": {"T"},
    "sipgrid.sip.transaction": {"Effect", "ServerKey"},
    "sipgrid.services.edgeport.core": {"Opaque", "Action", "Job"},
    "sipgrid.services.connect.registrar": {"_date"},  # the Date header's text, made once a second
    "sipgrid.services.frames": {"HELLO_TIMEOUT"},  # shortened by a test
    "sipgrid.services.grpc_clients": {"In", "Out"},
    "sipgrid.services.eager": {"T"},
}


def test_the_compiled_modules_keep_their_module_level_names_final() -> None:
    """Compiled, a module-level name that is not Final is looked up in the module's dict
    at every use; declared Final, it is a C static (or, for a literal, a constant). Before
    session 18 those lookups were some 700 a call, 7 % of its instructions."""
    # run by path: imported as native.build, mypy would meet native/build.py under two names
    modules = runpy.run_path(str(native.PACKAGE.parent / "native" / "build.py"))["MODULES"]
    found: dict[str, set[str]] = {}
    for module in modules:
        tree = ast.parse(native.source(module).read_text())
        for node in tree.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if "Final" not in ast.unparse(node.annotation):
                    found.setdefault(module, set()).add(node.target.id)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            found.setdefault(module, set()).add(name.id)
    assert found == NOT_FINAL


def test_the_modules_run_without_mypys_extensions() -> None:
    """The slim image runs the compiled modules (or the pure ones) without mypy installed:
    ``mypyc_attr`` (sipgrid/_mypyc.py) is then a decorator that changes nothing, and the
    classes that allow it can still be subclassed by interpreted code."""
    probe = (
        "import sys; sys.modules['mypy_extensions'] = None\n"  # an import of it fails
        "import sipgrid.sip as s\n"
        "from sipgrid.services import grpc_clients, grpc_servers\n"
        "class Counting(grpc_clients.GrpcProcessor): pass\n"
        "class Older(grpc_servers.LocationStreamServicer): pass\n"
        "print(s.COMPILED, grpc_servers.__file__.endswith('.py'))\n"
    )
    for compiled in ("1", "0"):
        env = {**os.environ, "SIPGRID_COMPILED": compiled}
        found = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        built = native.MANIFEST.exists() and compiled == "1"
        assert found == [str(built), str(not built)]


def test_make_builds_again_when_any_compiled_module_changes() -> None:
    """The Makefile's COMPILED_SOURCES name every module native/build.py compiles: an edit
    to one left out would leave the build stale, and everything would run pure Python."""
    root = native.PACKAGE.parent
    text = (root / "Makefile").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("COMPILED_SOURCES :="))
    listed: set[Path] = set()
    for word in line.split(":=", 1)[1].replace("$(wildcard", " ").replace(")", " ").split():
        listed.update(root.glob(word))
    modules = runpy.run_path(str(root / "native" / "build.py"))["MODULES"]
    assert [m for m in modules if native.source(m) not in listed] == []


def test_the_guided_builds_training_runs_a_servers_flows_to_the_end() -> None:
    """native/train.py, what the profile-guided build (SIPGRID_PGO=1: `make bench`, the
    image) measures, stops at the first answer a server would not give: a training that
    no longer gets through (a flow changed, a password moved) stops the build, and this
    test says so before an image build does."""
    root = native.PACKAGE.parent
    ran = subprocess.run(
        [sys.executable, str(root / "native" / "train.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "400 REGISTER exchanges and calls" in ran.stdout
