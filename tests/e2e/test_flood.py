"""A REGISTER flood from one source (sipp on 127.0.0.2) while a good client on another
address (sipp on 127.0.0.1) registers with digest: with a per-source limit, the good
client keeps every registration and the flood is told 503 then dropped."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import scenarios
from .harness import (
    DOMAIN,
    Sipgrid,
    all_in_one,
    free_port,
    require_sipp,
    run_sipp,
    write_scenario,
)

FLOOD_RATE = 3000  # REGISTERs per second asked of sipp
FLOOD_TOTAL = 15000
GOOD = 20


@pytest.fixture
def sipgrid(tmp_path: Path) -> Iterator[Sipgrid]:
    limits = {"requestsPerSecond": 50}
    with all_in_one(tmp_path / "sipgrid", edgeport={"limits": limits}) as server:
        yield server


def sipp(
    tmp_path: Path,
    name: str,
    xml: str,
    sipgrid: Sipgrid,
    source: str,
    rate: int,
    total: int,
    *extra: str,
) -> subprocess.Popen[bytes]:
    scenario = write_scenario(tmp_path, name, xml)
    port = free_port(source)
    args = [
        require_sipp(), f"127.0.0.1:{sipgrid.port}", "-sf", str(scenario), "-i", source,
        "-p", str(port), "-t", "u1", "-r", str(rate), "-m", str(total), "-nostdin",
        "-timeout", "40", "-timeout_error", "-key", "domain", DOMAIN, "-key", "user", "1001",
        "-key", "contact_host", source, "-key", "contact_port", str(port),
        "-key", "expires", "60", *extra,
    ]  # fmt: skip
    return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def successful(output: str) -> int:
    found = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(found.group(1)) if found else -1


def test_a_good_client_keeps_every_registration_under_a_flood(
    tmp_path: Path, sipgrid: Sipgrid
) -> None:
    flood = sipp(
        tmp_path, "flood", scenarios.register_flood(), sipgrid, "127.0.0.2", FLOOD_RATE, FLOOD_TOTAL
    )
    good = sipp(
        tmp_path, "good", scenarios.register(200), sipgrid, "127.0.0.1", 4, GOOD,
        "-au", "1001", "-ap", "1001-secret",
    )  # fmt: skip
    good_out = good.communicate(timeout=120)[0].decode(errors="replace")
    flood_out = flood.communicate(timeout=120)[0].decode(errors="replace")
    assert successful(good_out) == GOOD, good_out[-3000:] + sipgrid.log_text()[-2000:]
    # the flood heard back little: 50 answers a second and one 503 a second, not 15,000 401s
    answered = sum(int(n) for n in re.findall(r"(\d+) (?:dead call|out-of-call) msg", flood_out))
    assert 0 < answered < FLOOD_TOTAL / 10, flood_out[-2000:]


def test_unauthenticated_registers_leave_no_transactions_behind(tmp_path: Path) -> None:
    """A 401 goes out as a stateless UAS sends it (RFC 3261 section 8.2.7): sipp's 200
    unauthenticated REGISTERs leave no server transaction waiting out Timer J (32 s), where
    each would otherwise have stayed (section 26.1.5), while the REGISTER that binds keeps
    its own, as every other answer does."""
    metrics = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{metrics}"}}
    with all_in_one(tmp_path / "sipgrid", edgeport=spec) as server:
        challenged = run_sipp(
            tmp_path,
            "challenged",
            scenarios.register_unauthenticated(401),
            server_port=server.port,
            extra=["-m", "200", "-r", "100"],
        )
        assert challenged.ok, challenged.output
        assert server_transactions(metrics) == 0
        registered = run_sipp(tmp_path, "bound", scenarios.register(200), server_port=server.port)
        assert registered.ok, registered.output
        assert server_transactions(metrics) == 1  # the 200's, for 32 s; the 401's is gone


def scraped(port: int, sample: str) -> int | None:
    """The value of one sample (name and labels) of the metrics page, None without it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return None if found is None else int(float(found.group(1)))


def server_transactions(port: int) -> int:
    found = scraped(port, 'sipgrid_transactions_active{side="server"}')
    assert found is not None
    return found


def test_a_registrar_is_not_capped_by_the_transactions_that_linger(tmp_path: Path) -> None:
    """Each REGISTER's 200 leaves its transaction for Timer J (32 s) to answer
    retransmissions. Those used to count against maxTransactions, which capped a registrar
    at maxTransactions / 32 exchanges a second however idle its CPU (with the default
    50,000, a sustained 2000/s got 503s after 25 s). They count apart now: 600 exchanges
    in 3 s through a table of 100 all succeed, and the oldest lingering ones end early."""
    metrics = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{metrics}"}, "limits": {"maxTransactions": 100}}
    with all_in_one(tmp_path / "sipgrid", edgeport=spec) as server:
        registered = run_sipp(
            tmp_path,
            "many",
            scenarios.register(200),
            server_port=server.port,
            extra=["-m", "600", "-r", "200"],
        )
        assert registered.ok, registered.output[-2000:]
        assert server_transactions(metrics) <= 100
        assert events(metrics, "lingering_ended_early") >= 450
        assert events(metrics, "transactions_full") == 0


def events(port: int, event: str) -> int:
    return scraped(port, f'sipgrid_edgeport_events_total{{event="{event}"}}') or 0
