"""Mutation testing (make mutation): mutmut over sipgrid/sip and sipgrid/services/connect with the
fast unit tests ([tool.mutmut] in pyproject.toml). Writes the score and the surviving
mutants to bench/results/mutation.json. Not part of make test: it takes a while.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mutation.json"


def main() -> None:
    mutmut = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "SIPGRID_SHARED": str(ROOT.parent / "shared")}
    started = time.monotonic()
    run = subprocess.run([str(mutmut), "run"], cwd=ROOT, env=env, check=False)
    seconds = time.monotonic() - started
    subprocess.run([str(mutmut), "export-cicd-stats"], cwd=ROOT, env=env, check=True)
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    listing = subprocess.run(
        [str(mutmut), "results"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    survivors = [
        line.split(":")[0].strip()
        for line in listing.splitlines()
        if line.strip().endswith(": survived")
    ]
    killed = int(stats.get("killed", 0))
    judged = killed + int(stats.get("survived", 0))
    figures = {
        "tool": "mutmut 3.8.1",
        "paths": ["sipgrid/sip", "sipgrid/services/connect"],
        "score": round(killed / judged, 4) if judged else None,
        "stats": stats,
        "seconds": round(seconds, 1),
        "exit_code": run.returncode,
        "survivors": survivors,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"mutation score {figures['score']} ({killed} killed of {judged}; "
        f"{len(survivors)} survived), written to {RESULTS}"
    )


if __name__ == "__main__":
    main()
