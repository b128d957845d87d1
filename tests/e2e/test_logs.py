"""Logs an operator can use: with LOG_FORMAT=json each log line is one JSON object, and at
info level a registration is one line carrying its Call-ID, AOR, contact and expiry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import scenarios
from .harness import all_in_one, run_sipp


def test_json_logs_carry_the_call_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    with all_in_one(tmp_path / "sipgrid") as sipgrid:
        registered = run_sipp(
            tmp_path, "register", scenarios.register(200), server_port=sipgrid.port
        )
        assert registered.ok, registered.output
        lines = sipgrid.log_text().splitlines()
    logs = [json.loads(line) for line in lines if not line.startswith("sipgrid: ")]
    assert logs and all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)
    (registration,) = [e for e in logs if e["message"].startswith("registration ")]
    assert registration["aor"] == "sip:1001@sip.local" and registration["expires"] == 60
    assert registration["call_id"] and registration["level"] == "info"
