"""Real phones no one here wrote: baresip (Debian) on TCP calls baresip on UDP and back,
through sipgrid on loopback, the all-in-one and the distributed wiring. A UDP phone's
messages reach the TCP phone with Content-Length (RFC 3261 section 20.14), and the 200,
ACK and BYE cross both ways. The ACK and the BYE take the EdgePort's followed path (the
dialog's route set, without Connect), as its event count on /metrics shows."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Sipgrid, all_in_one, distributed, event, free_port, page

CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{port}
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aufile.so
module_app account.so
module_app menu.so
audio_player aufile,{directory}/played.wav
audio_source ausine,440
audio_alert aufile,{directory}/alert.wav
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2
auplay_channels 2
rtp_ports {rtp}-{rtp_end}
"""

ACCOUNT = (
    "<sip:{user}@sip.local;transport={transport}>;auth_pass={user}-secret;"
    'outbound="sip:127.0.0.1:{server};transport={transport}";regint=600;answermode=auto\n'
)


@pytest.fixture(scope="module")
def baresip() -> str:
    path = shutil.which("baresip")
    if path is None:
        pytest.fail(
            "baresip is missing: run `make test` (Debian package baresip-core)", pytrace=False
        )
    return path


@pytest.fixture(params=["all-in-one", "distributed"])
def sipgrid(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Sipgrid, str]]:
    """Either wiring, and its EdgePort's /metrics address."""
    http = free_port()
    spec = {"http": {"bindAddr": f"127.0.0.1:{http}"}}
    start = all_in_one if request.param == "all-in-one" else distributed
    with start(tmp_path / "sipgrid", edgeport=spec) as server:
        yield server, f"http://127.0.0.1:{http}/metrics"


def configure(directory: Path, user: str, transport: str, server: int) -> Path:
    directory.mkdir(parents=True)
    rtp = free_port()
    (directory / "config").write_text(
        CONFIG.format(port=free_port(), directory=directory, rtp=rtp, rtp_end=rtp + 10)
    )
    (directory / "accounts").write_text(
        ACCOUNT.format(user=user, transport=transport, server=server)
    )
    return directory


def start(baresip: str, directory: Path, seconds: int, *commands: str) -> subprocess.Popen[str]:
    args = [baresip, "-f", str(directory), "-t", str(seconds)]
    for command in commands:
        args += ["-e", command]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True
    )


def output(process: subprocess.Popen[str]) -> str:
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


@pytest.mark.parametrize(("caller_transport", "callee_transport"), [("tcp", "udp"), ("udp", "tcp")])
def test_baresip_calls_baresip_across_transports(
    baresip: str,
    sipgrid: tuple[Sipgrid, str],
    tmp_path: Path,
    caller_transport: str,
    callee_transport: str,
) -> None:
    server, metrics = sipgrid
    callee_dir = configure(tmp_path / "callee", "1002", callee_transport, server.port)
    caller_dir = configure(tmp_path / "caller", "1001", caller_transport, server.port)
    callee = start(baresip, callee_dir, 12)
    try:
        time.sleep(1.5)  # registered
        caller = start(baresip, caller_dir, 6, "/dial sip:1002@sip.local")
        caller_out = output(caller)
    finally:
        callee_out = output(callee)
    detail = f"caller:\n{caller_out}\ncallee:\n{callee_out}\nsipgrid:\n{server.log_text()[-2000:]}"
    assert "200 OK" in caller_out and "Call established" in caller_out, detail
    assert "Call established" in callee_out, detail
    # the caller quits after 6 s and hangs up: the callee hears the BYE
    assert "session closed" in callee_out.split("Call established", 1)[1], detail
    # the caller's ACK and BYE, each routed by the EdgePort on the dialog's route set
    assert event(page(metrics), "dialog_followed") == 2, detail
