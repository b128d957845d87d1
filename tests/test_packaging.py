"""`pip install sipgrid` adds the package sipgrid and nothing else: the services ride
inside it as sipgrid.services (no top-level `services` to collide with another's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = shutil.ignore_patterns(
    ".venv", "node_modules", "data", "mutants", "build", "*.egg-info", "__pycache__", ".*"
)


def test_the_wheel_holds_sipgrid_and_nothing_else(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=LEFT_OUT, symlinks=True)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("sipgrid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"sipgrid", next(t for t in top if t.endswith(".dist-info"))}, top
    # every module of the checkout is in it, the services under sipgrid/services
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "sipgrid").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "sipgrid/services/connect/processor.py" in modules
    # and the C sources, whose hashes the compiled build's MANIFEST names beside the
    # modules' (sipgrid/native.py: without them an installed build would not run)
    modules |= {str(path.relative_to(ROOT)) for path in (ROOT / "sipgrid").rglob("*.c")}
    assert "sipgrid/sip/_fast.c" in modules
    assert modules <= set(names), sorted(modules - set(names))[:5]
    assert (
        "sipgrid/services/apiserver/migrations/versions/0001_the_seven_connect_resources.py"
        in names
    )
