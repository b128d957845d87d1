"""What a service reads from the environment: one typed object, checked at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipgrid.config import ConfigError
from sipgrid.services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_routrs_names_are_accepted() -> None:
    assert Settings.load({"API_ADDR": "api:51907"}).apiserver_addr == "api:51907"
    both = {"APISERVER_ADDR": "sipgrid:2", "API_ADDR": "routr:1"}
    assert Settings.load(both).apiserver_addr == "sipgrid:2"  # ours wins when both
    routr = {"NATS_PUBLISHER_ENABLED": "true", "NATS_PUBLISHER_URL": "nats://nats:4222"}
    assert Settings.load(routr).nats() == "nats://nats:4222"
    assert Settings.load({"NATS_PUBLISHER_URL": "nats://nats:4222"}).nats() == ""  # not enabled
    assert Settings.load({**routr, "NATS_URL": "nats://mine:4222"}).nats() == "nats://mine:4222"


def test_defaults_and_empty_variables() -> None:
    defaults = Settings.load({})
    assert defaults.drain_seconds == 10.0 and defaults.digest_algorithms == ["MD5"]
    assert defaults.location_addr == "localhost:51902" and defaults.ban_failures == 10
    assert defaults.log_format == "text" and defaults.phone_page == "off"
    assert Settings.load({"BAN_FAILURES": "", "LOG_FORMAT": ""}) == defaults  # empty: unset
    given = Settings.load(
        {
            "DIGEST_ALGORITHMS": "sha-256, MD5",
            "EXTERNAL_ADDRS": "203.0.113.7, sip.example.com",
            "LOG_FORMAT": "JSON",
            "SIPGRID_DRAIN_SECONDS": "0",
        }
    )
    assert given.digest_algorithms == ["SHA-256", "MD5"] and given.log_format == "json"
    assert given.external_addrs == ["203.0.113.7", "sip.example.com"]
    assert given.drain_seconds == 0.0


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SIPGRID_DRAIN_SECONDS", "-1", "greater than or equal to 0"),
        ("SIPGRID_DRAIN_SECONDS", "soon", "valid number"),
        ("SIPGRID_DRAIN_SECONDS", "7200", "less than or equal to 3600"),
        ("BAN_FAILURES", "ten", "valid integer"),
        ("RTPENGINE_PORT", "x", "valid integer"),
        ("RTPENGINE_PORT", "70000", "less than 65536"),
        ("DIGEST_ALGORITHMS", "SHA-256,MD4", "'MD4' is not one of SHA-256, MD5, SHA-512-256"),
        ("LOCALNETS", "10.0.0.0/8,nonsense", "not an IP network: 'nonsense'"),
        ("LOCATION_WRITE", "sometimes", "'behind' or 'through'"),
        ("SIPGRID_PHONE_PAGE", "yes", "'on' or 'off'"),
        ("LOG_LEVEL", "loud", "'debug'"),
        ("API_ADDR", "api", "'api' is not host:port"),
        ("METRICS_BIND_ADDR", "0.0.0.0:http", "is not host:port"),
        ("FRAMES_BIND_ADDR", "51914", "'51914' is not host:port"),
        ("SIPGRID_FRAMES", "perhaps", "valid boolean"),
        ("NATS_PUBLISHER_ENABLED", "maybe", "valid boolean"),
    ],
)
def test_a_bad_variable_is_named_with_its_value(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({name: value})
    message = str(info.value)
    assert message.startswith(f"environment: field {name}: ") and "\n" not in message
    assert problem in message and message.endswith(f"(it is {value!r})")


def test_a_service_with_a_bad_variable_stops_at_start_with_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "BAN_WINDOW": "a minute"}
    for args in (["serve", "connect"], ["run"]):
        done = subprocess.run(
            [sys.executable, "-m", "sipgrid.cli", *args, "--config-dir", str(ROOT / "config")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            "sipgrid: environment: field BAN_WINDOW: Input should be a valid number, "
            "unable to parse string as a number (it is 'a minute')\n"
        )
