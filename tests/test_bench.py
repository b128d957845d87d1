"""`make bench`'s side-by-side table (bench/versus.py), from a report of a real run
(tests/versus_report.json: `python -m bench.versus` in session 24). The benchmark itself
takes half an hour and is not part of `make test`; this keeps what it prints at the end
working as the report grows."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from bench.versus import ratios, table

REPORT: dict[str, Any] = json.loads((Path(__file__).parent / "versus_report.json").read_text())


def cpu(report: dict[str, Any], server: str, run: str) -> float:
    return float(report[server][run]["cpu_ms_each"])


def row(text: str, label: str) -> list[str]:
    """The cells after ``label`` in the table's line that starts with it."""
    (line,) = [line for line in text.splitlines() if line.startswith(label + "  ")]
    return line[len(label) :].split()


def test_the_ratios_are_sipgrid_over_kamailio_in_the_same_run() -> None:
    found = ratios(REPORT)
    for run in ("calls", "trunk_calls", "registers_300", "registers_2000"):
        expected = round(cpu(REPORT, "sipgrid", run) / cpu(REPORT, "kamailio", run), 2)
        assert found[f"{run}_sipgrid_over_kamailio"] == expected, run
    stateful = cpu(REPORT, "sipgrid", "registers_2000") / cpu(
        REPORT, "kamailio_stateful_register", "registers_2000"
    )
    assert found["registers_2000_sipgrid_over_kamailio_stateful_register"] == round(stateful, 2)
    assert found["calls_distributed_100_over_kamailio"] == round(
        cpu(REPORT, "distributed", "calls_100") / cpu(REPORT, "kamailio", "calls_100"), 2
    )
    assert found["calls_distributed_over_all_in_one"] == round(
        cpu(REPORT, "distributed", "calls") / cpu(REPORT, "sipgrid", "calls"), 2
    )


def test_the_table_has_a_row_per_aim() -> None:
    text = table(REPORT)
    k, s = cpu(REPORT, "kamailio", "calls"), cpu(REPORT, "sipgrid", "calls")
    assert row(text, "CPU ms per call at 200/s") == [f"{k:.3f}", f"{s:.3f}", f"{s / k:.2f}"]
    k = cpu(REPORT, "kamailio_stateful_register", "registers_300")
    s = cpu(REPORT, "sipgrid", "registers_300")
    label = "CPU ms per REGISTER at 300/s, Kamailio's registrar stateful"
    assert row(text, label) == [f"{k:.3f}", f"{s:.3f}", f"{s / k:.2f}"]
    best = [str(REPORT[name]["highest_clean_call_rate"]) for name in ("kamailio", "sipgrid")]
    assert row(text, "highest clean calls/s") == best
    # the distributed wiring past its capacity: exchanges completed, and CPU per exchange
    done = [
        str(REPORT[name]["registers_2000"]["successful"]) for name in ("kamailio", "distributed")
    ]
    assert row(text, "distributed: REGISTERs at 2000/s completed of 20000") == done
    k, d = cpu(REPORT, "kamailio", "registers_2000"), cpu(REPORT, "distributed", "registers_2000")
    label = "distributed CPU ms per REGISTER at 2000/s"
    assert row(text, label) == [f"{k:.3f}", f"{d:.3f}", f"{d / k:.2f}"]
    by_service = REPORT["distributed"]["calls"]["cpu_ms_each_by_service"]
    (line,) = [line for line in text.splitlines() if line.startswith("distributed at 200/s, CPU")]
    assert all(f"{name} {ms:.3f}" in line for name, ms in by_service.items())


def test_a_report_from_before_a_run_was_added_still_prints() -> None:
    """An older report (no stateful Kamailio, no workers, no split by service): the rows
    it has no figures for say nan, and the rest are as before."""
    older = copy.deepcopy(REPORT)
    for name in ("kamailio_stateful_register", "workers_1", "workers_2"):
        del older[name]
    del older["distributed"]["calls"]["cpu_ms_each_by_service"]
    text = table(older)
    label = "CPU ms per REGISTER at 2000/s, Kamailio's registrar stateful"
    assert row(text, label)[0] == "nan"
    assert not any(line.startswith("1 worker(s)") for line in text.splitlines())
    assert not any(line.startswith("distributed at 200/s, CPU") for line in text.splitlines())
    assert row(text, "CPU ms per call at 200/s") == row(table(REPORT), "CPU ms per call at 200/s")
    assert math.isnan(ratios(older)["registers_300_sipgrid_over_kamailio_stateful_register"])


def test_the_workers_rows() -> None:
    """The workers on Redis: CPU per call beside Kamailio's, the highest clean rate, and
    (since session 24) the REGISTERs of one AOR: how many exchanges completed, and the
    CPU of each beside Kamailio's."""
    text = table(REPORT)
    k = cpu(REPORT, "kamailio", "calls")
    for count in (1, 2):
        w = cpu(REPORT, f"workers_{count}", "calls")
        label = f"{count} worker(s), Redis: CPU ms per call at 200/s"
        assert row(text, label) == [f"{w:.3f}", f"{w / k:.2f}"]  # no Kamailio cell
        for rate in (300, 2000):
            run = REPORT[f"workers_{count}"][f"registers_{rate}"]
            label = f"{count} worker(s), Redis: REGISTERs at {rate}/s completed of {rate * 10}"
            assert row(text, label) == [str(run["successful"])]
            kr = cpu(REPORT, "kamailio", f"registers_{rate}")
            label = f"{count} worker(s), Redis: CPU ms per REGISTER at {rate}/s"
            wr = float(run["cpu_ms_each"])
            assert row(text, label) == [f"{kr:.3f}", f"{wr:.3f}", f"{wr / kr:.2f}"]
    # a report from before the workers took REGISTERs: no such rows
    older = copy.deepcopy(REPORT)
    for count in (1, 2):
        for rate in (300, 2000):
            del older[f"workers_{count}"][f"registers_{rate}"]
    assert not any("REGISTER" in line and "worker" in line for line in table(older).splitlines())
