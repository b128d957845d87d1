"""The SIP core compiled by mypyc (`make compiled`, native/build.py) runs when it was built
from the sources as they are, and not otherwise; SIPGRID_COMPILED=0 turns it off. `make test`
runs the whole suite on the compiled core and the core's tests again on the pure Python one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import sipgrid.sip

PACKAGE = Path(sipgrid.sip.__file__).parent
MANIFEST = PACKAGE / "_compiled" / "MANIFEST"


def _built() -> list[str]:
    return [line.split()[0] for line in MANIFEST.read_text().splitlines()]


def test_the_core_that_runs_is_the_one_asked_for() -> None:
    modules = _built() if MANIFEST.exists() else ["parser"]
    files = [Path(import_module(f"sipgrid.sip.{name}").__file__ or "") for name in modules]
    if MANIFEST.exists() and os.environ.get("SIPGRID_COMPILED") != "0":
        assert sipgrid.sip.COMPILED
        assert [f.name for f in files if f.suffix == ".py"] == []
    else:
        assert not sipgrid.sip.COMPILED
        assert [f.suffix for f in files] == [".py"] * len(files)


def test_a_build_of_older_sources_is_not_run(tmp_path: Path) -> None:
    if not MANIFEST.exists():
        return  # nothing compiled here (no C compiler): the other test checks the pure core
    copy = tmp_path / "sipgrid" / "sip"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy.parent / "__init__.py").write_text("")
    probe = [sys.executable, "-c", "import sipgrid.sip as s; print(s.COMPILED)"]
    env = {k: v for k, v in os.environ.items() if k != "SIPGRID_COMPILED"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        )

    assert run().stdout.strip() == "True"  # the copy's build matches its sources
    with (copy / "uri.py").open("a") as source:
        source.write("\n# an edit made after the build\n")
    stale = run()
    assert stale.stdout.strip() == "False"
    assert "built from older sources" in stale.stderr
