"""sipgrid probed as an attacker would, with Debian's sipvicious: svwar enumerates no
extension, svcrack is banned before its dictionary reaches the password (word 151 of
200), and `sipgrid bans` lists and lifts the ban. A caller banned in the middle of its call is
refused there too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import scenarios
from .harness import (
    ROOT,
    Sipgrid,
    all_in_one,
    distributed,
    free_port,
    registered_callee,
    run_sipp,
    wait_for_log,
)

# what an attack may still get answered once it is banned: the answers already on their way
AFTER_DONE = 3.0
WORDS = [f"guess{i}" for i in range(150)] + ["1001-secret"] + [f"later{i}" for i in range(49)]


@pytest.fixture(scope="module")
def sipvicious() -> None:
    if shutil.which("svcrack") is None or shutil.which("svwar") is None:
        pytest.fail(
            "sipvicious is missing: run `make test` (Debian package sipvicious)", pytrace=False
        )


@pytest.fixture(params=["all-in-one", "distributed"])
def sipgrid(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sipgrid]:
    """Both wirings: a distributed Connect keeps its bans in the APIServer's database."""
    start = all_in_one if request.param == "all-in-one" else distributed
    with start(tmp_path / "sipgrid") as server:
        yield server


def attack(
    tmp_path: Path, args: list[str], seconds: float, done: Callable[[], bool] | None = None
) -> str:
    """Run a sipvicious tool for at most ``seconds`` (svcrack waits for ever once banned),
    or until AFTER_DONE seconds after ``done()`` first holds."""
    process = subprocess.Popen(
        [*args, "-P", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},  # sipvicious keeps sessions in ~/.sipvicious
    )
    deadline = time.monotonic() + seconds
    while True:
        try:
            return process.communicate(timeout=0.5)[0]
        except subprocess.TimeoutExpired:  # what it wrote so far is kept for the next call
            now = time.monotonic()
            if done is not None and done():
                deadline = min(deadline, now + AFTER_DONE)
                done = None
            if now >= deadline:
                process.kill()
                return process.communicate()[0]


def test_svwar_finds_no_extension(sipvicious: None, sipgrid: Sipgrid, tmp_path: Path) -> None:
    for method in ("REGISTER", "OPTIONS", "INVITE"):
        out = attack(
            tmp_path,
            ["svwar", "-e1000-1010", "-m", method, "-p", str(sipgrid.port), "127.0.0.1"],
            60,
        )
        assert "found nothing" in out and "1001" not in out, out


def test_svcrack_is_banned_before_it_finds_the_password(
    sipvicious: None, sipgrid: Sipgrid, tmp_path: Path
) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    out = attack(
        tmp_path,
        ["svcrack", "-u", "1001", "-d", str(words), "-p", str(sipgrid.port), "--domain", "sip.local", "127.0.0.1"],
        20,
        lambda: "banned 127.0.0.1" in sipgrid.log_text(),
    )  # fmt: skip
    assert "1001-secret" not in out, out
    assert "banned 127.0.0.1" in sipgrid.log_text()

    env = {**os.environ, "SIPGRID_DATA_DIR": str(sipgrid.config_dir / "data"), "DATABASE_URL": ""}

    def bans(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sipgrid.cli", "bans", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    assert bans("list").startswith("127.0.0.1\tuntil ")
    refused = run_sipp(
        tmp_path,
        "register-banned",
        scenarios.register_unauthenticated(403),
        server_port=sipgrid.port,
    )
    assert refused.ok, refused.output  # the right password does not help while banned
    assert "unbanned" in bans("remove", "127.0.0.1")
    time.sleep(2.5)  # sipgrid reads the bans every 2 s
    registered = run_sipp(
        tmp_path, "register-again", scenarios.register(200), server_port=sipgrid.port
    )
    assert registered.ok, registered.output
    assert bans("list").strip() == "no source is banned"


def test_a_caller_banned_in_the_middle_of_its_call_is_refused_in_it(tmp_path: Path) -> None:
    """The all-in-one's EdgePort routes a dialog's ACK and BYE by itself (README, dialogs
    followed), and asks Connect's guard first: a source banned since its call began gets
    Connect's 403 for its BYE, as it does for everything else. (A distributed EdgePort
    does not know Connect's bans: README says so.)"""
    with (
        all_in_one(tmp_path / "sipgrid", env={"BAN_FAILURES": "3"}) as server,
        registered_callee(tmp_path, server),
        ThreadPoolExecutor(1) as pool,
    ):
        call = pool.submit(
            run_sipp,
            tmp_path,
            "call",
            scenarios.call(bye_after=4000, bye_answer=403),
            server_port=server.port,
        )
        wait_for_log(server, "call.started")
        guesses = run_sipp(
            tmp_path,
            "guesses",
            scenarios.register(403),
            server_port=server.port,
            password="wrong",
            extra=["-m", "3", "-l", "1"],
        )
        assert guesses.ok, guesses.output
        assert "banned 127.0.0.1" in server.log_text()
        called = call.result(timeout=30)
        assert called.ok, called.output + server.log_text()[-2000:]
