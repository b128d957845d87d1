"""A short fuzz run (seconds) of each target in tests/fuzz, seeded with the RFC 4475
messages: no input may crash the parser or the EdgePort core. `make fuzz` runs longer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sip.helpers import TORTURE_DIR

ROOT = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("SIPGRID_FUZZ_SECONDS", "5"))


@pytest.mark.parametrize("target", ["parser", "edgeport", "fast"])
def test_a_short_fuzz_run_finds_no_crash(tmp_path: Path, target: str) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(TORTURE_DIR, corpus)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            f"-max_total_time={SECONDS}",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
        check=False,
    )
    crashes = list(tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, done.stderr[-3000:]
    assert "Done" in done.stderr  # it ran
