"""Real phones no one here wrote, through sipgrid, the all-in-one and the distributed
wiring: baresip (Debian; the re SIP stack) and linphonec (Debian; the belle-sip stack).

On loopback: baresip on TCP or TLS calls baresip on UDP and back (a UDP phone's messages
reach a TCP or TLS phone with Content-Length, RFC 3261 section 20.14). baresip and linphonec (UDP or
TLS) call each other; linphonec sends a chat message first, and puts its call on hold and
back (two re-INVITEs); it cancels a call while baresip rings; it transfers a call to a
third phone. The requests of each dialog take the EdgePort's followed path (the dialog's
route set, without Connect), as its event count on /metrics shows: both phones send the
INVITE's Proxy-Authorization again with them (linphonec answers the challenge anew for its
BYE, with the BYE's URI and the next nonce count), and the EdgePort takes it out.

Behind a real NAT (network namespaces: ``nat_network`` in the harness): baresip and
linphonec on a lan call each other through sipgrid on a host of its own."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.certs import certificate, pem

from .harness import (
    NatNetwork,
    Sipgrid,
    all_in_one,
    distributed,
    event,
    free_port,
    nat_network,
    page,
    wait_for_log,
)

CONFIG = """poll_method epoll
sip_listen {host}:{port}
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
    'outbound="sip:{server_host}:{server};transport={transport}";regint=600;answermode={answer}\n'
)


def installed(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"{program} is missing: run `make test` (Debian package {package})", pytrace=False
        )
    return path


@pytest.fixture(scope="module")
def baresip() -> str:
    return installed("baresip", "baresip-core")


@pytest.fixture(scope="module")
def linphonec() -> str:
    return installed("linphonec", "linphone-cli")


# a third agent, 1003, for a transfer
CAROL: list[dict[str, object]] = [
    {
        "apiVersion": "v2beta1",
        "kind": "Credentials",
        "ref": "credentials-1003",
        "metadata": {"name": "Credentials of 1003"},
        "spec": {"credentials": {"username": "1003", "password": "1003-secret"}},
    },
    {
        "apiVersion": "v2beta1",
        "kind": "Agent",
        "ref": "agent-1003",
        "metadata": {"name": "Carol"},
        "spec": {
            "username": "1003",
            "domainRef": "domain-local",
            "credentialsRef": "credentials-1003",
            "privacy": "None",
            "maxContacts": 3,
        },
    },
]


class Wiring(NamedTuple):
    server: Sipgrid
    metrics: str  # its EdgePort's /metrics address
    ca: Path  # the CA that signed its TLS certificate
    tls_name: str = "localhost"  # the name in its certificate


def tls_files(directory: Path, name: str) -> dict[str, object]:
    """A test CA (``directory/ca.pem``) and a certificate it signed for ``name``: the
    EdgePort's securityContext that serves it."""
    directory.mkdir()
    authority = certificate("sipgrid test CA", ca=True)
    for what, (cert, key) in (
        ("ca", authority),
        ("server", certificate(name, authority, names=(name,))),
    ):
        cert_pem, key_pem = pem(cert, key)
        (directory / f"{what}.pem").write_bytes(cert_pem)
        (directory / f"{what}.key").write_bytes(key_pem)
    return {"certFile": str(directory / "server.pem"), "keyFile": str(directory / "server.key")}


@pytest.fixture(params=["all-in-one", "distributed"])
def sipgrid(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Wiring]:
    """Either wiring, on UDP, TCP and TLS (a certificate of a test CA's)."""
    tls = tmp_path / "tls"
    http = free_port()
    spec = {
        "http": {"bindAddr": f"127.0.0.1:{http}"},
        "securityContext": tls_files(tls, "localhost"),
    }
    start = all_in_one if request.param == "all-in-one" else distributed
    with start(
        tmp_path / "sipgrid", transports=("tls",), edgeport=spec, extra_resources=CAROL
    ) as server:
        yield Wiring(server, f"http://127.0.0.1:{http}/metrics", tls / "ca.pem")


def configure(
    directory: Path,
    user: str,
    transport: str,
    server: int,
    answer: str = "auto",
    host: str = "127.0.0.1",
    server_host: str = "127.0.0.1",
) -> Path:
    """baresip's folder; ``answer``: its answermode (auto, or manual: it rings until hung up);
    it listens on ``host`` and sends everything to sipgrid at ``server_host``."""
    directory.mkdir(parents=True)
    rtp = free_port()
    (directory / "config").write_text(
        CONFIG.format(host=host, port=free_port(), directory=directory, rtp=rtp, rtp_end=rtp + 10)
    )
    (directory / "accounts").write_text(
        ACCOUNT.format(
            user=user, transport=transport, server=server, server_host=server_host, answer=answer
        )
    )
    return directory


def start(
    baresip: str, directory: Path, seconds: int, *commands: str, under: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """``under``: a command to run it under (``ip netns exec``: on another host)."""
    args = [*under, baresip, "-f", str(directory), "-t", str(seconds)]
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


@pytest.mark.parametrize(
    ("caller_transport", "callee_transport"),
    [("tcp", "udp"), ("udp", "tcp"), ("tls", "udp"), ("udp", "tls")],
)
def test_baresip_calls_baresip_across_transports(
    baresip: str,
    sipgrid: Wiring,
    tmp_path: Path,
    caller_transport: str,
    callee_transport: str,
) -> None:
    """On TLS, baresip (1.0) takes any certificate (it called through sipgrid with another
    CA's in its sip_cafile): this shows the transport; linphonec's tests check the
    certificate."""
    server, metrics = sipgrid.server, sipgrid.metrics

    def port(transport: str) -> int:
        return server.ports["tls"] if transport == "tls" else server.port

    callee_dir = configure(tmp_path / "callee", "1002", callee_transport, port(callee_transport))
    caller_dir = configure(tmp_path / "caller", "1001", caller_transport, port(caller_transport))
    callee = start(baresip, callee_dir, 30)
    try:
        wait_for_log(server, "registration sip:1002@sip.local")
        caller = start(baresip, caller_dir, 6, "/dial sip:1002@sip.local")
        caller_out = output(caller)
    finally:
        # the caller hung up as it quit, and waited for its BYE's 200, which the callee
        # sent: the callee is done (baresip quits on SIGTERM, its output written out)
        callee.terminate()
        callee_out = output(callee)
    detail = f"caller:\n{caller_out}\ncallee:\n{callee_out}\nsipgrid:\n{server.log_text()[-2000:]}"
    assert "200 OK" in caller_out and "Call established" in caller_out, detail
    assert "Call established" in callee_out, detail
    # the caller quits after 6 s and hangs up: the callee hears the BYE
    assert "session closed" in callee_out.split("Call established", 1)[1], detail
    # the caller's ACK and BYE, each routed by the EdgePort on the dialog's route set
    assert event(page(metrics), "dialog_followed") == 2, detail


# linphonec's own settings: SIP on UDP or TLS only, on a free port (-1: off); through sipgrid
# for calls and messages too (reg_route: its outbound proxy; the contact names the account,
# else a chat message goes from sip:linphone@<this host's address>, straight to sip.local's
# DNS); sipgrid's TLS certificate checked against the test CA, by name: belle-sip's mbedtls
# matches a DNS name, not an IP address (SAN or CN), so over TLS the proxy is "localhost"
LINPHONERC = """[sip]
contact=sip:{user}@sip.local
guess_hostname=0
sip_port={udp}
sip_tcp_port=-1
sip_tls_port={tls}
root_ca={ca}
verify_server_certs=1
verify_server_cn=1
default_proxy=0
[rtp]
audio_rtp_port={rtp}
video_rtp_port={video_rtp}
[sound]
echocancellation=0
[proxy_0]
reg_proxy=<sip:{host}:{server};transport={transport}>
reg_route=<sip:{host}:{server};transport={transport};lr>
reg_identity=sip:{user}@sip.local
reg_expires=600
reg_sendregister=1
publish=0
[auth_info_0]
username={user}
passwd={user}-secret
domain=sip.local
"""


class Linphonec:
    """linphonec registered as ``user``, answering calls by itself (-a), driven by commands
    on its standard input; its log (every level) is read to wait for its states. Its HOME
    is a folder of its own, with the ~/.local/share/linphone its database needs: linphonec
    does not make it, and without it the core never starts (it answers every INVITE 503
    and opens no SIP port)."""

    def __init__(
        self,
        program: str,
        directory: Path,
        user: str,
        sipgrid: Wiring,
        transport: str,
        under: tuple[str, ...] = (),
    ) -> None:
        """``under``: a command to run it under (``ip netns exec``: on another host)."""
        home = directory / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True)
        config = directory / "linphonerc"
        tls = transport == "tls"
        config.write_text(
            LINPHONERC.format(
                udp=-1 if tls else free_port(),
                tls=free_port() if tls else -1,
                ca=sipgrid.ca,
                rtp=free_port(),
                video_rtp=free_port(),
                host=sipgrid.tls_name if tls else sipgrid.server.host,
                server=sipgrid.server.ports["tls"] if tls else sipgrid.server.port,
                transport=transport,
                user=user,
            )
        )
        self.log = directory / "linphonec.log"
        self.log.touch()
        self._console: str | None = None
        self.process = subprocess.Popen(
            [*under, program, "-c", str(config), "-a", "-d", "6", "-l", str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        )

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                pytest.fail(f"linphonec logged no {text!r}:\n{self.output()}", pytrace=False)
            time.sleep(0.1)

    def output(self) -> str:
        """Its console once it has quit (a quit command, else killed); read once."""
        if self._console is None:
            if self.process.poll() is None:
                with contextlib.suppress(OSError):
                    self.command("quit")
            self._console = output(self.process)
        return self._console


@pytest.mark.parametrize("transport", ["udp", "tls"])
@pytest.mark.parametrize("caller", ["baresip", "linphonec"])
def test_baresip_and_linphonec_call_each_other(
    baresip: str, linphonec: str, sipgrid: Wiring, tmp_path: Path, caller: str, transport: str
) -> None:
    """baresip on UDP; linphonec on UDP, or on TLS (checking sipgrid's certificate), where
    the INVITE to it goes down the connection it registered on (RFC 5923's alias in its Via).
    linphonec, calling, puts the call on hold and takes it back before it hangs up."""
    server, metrics = sipgrid.server, sipgrid.metrics
    linphone_dir = tmp_path / "linphonec"
    linphone_dir.mkdir()
    phone = Linphonec(linphonec, linphone_dir, "1002", sipgrid, transport)
    try:
        phone.wait_for("to [LinphoneRegistrationOk]")
        baresip_dir = configure(tmp_path / "baresip", "1001", "udp", server.port)
        if caller == "baresip":  # it hangs up as it quits, after 6 s
            bare = start(baresip, baresip_dir, 6, "/dial sip:1002@sip.local")
            baresip_out = output(bare)
        else:
            bare = start(baresip, baresip_dir, 30)
            try:
                wait_for_log(server, "registration sip:1001@sip.local")
                # a chat message first: challenged (407), sent again with digest, and
                # answered 200 by baresip
                phone.command("chat sip:1001@sip.local hello from linphonec")
                phone.wait_for("moving from InProgress to Delivered")
                phone.command("call sip:1001@sip.local")
                phone.wait_for("to LinphoneCallStreamsRunning")
                # on hold and back: two re-INVITEs (a=sendonly, then a=sendrecv) in the dialog
                phone.command("pause 1")
                phone.wait_for("to LinphoneCallPaused")
                phone.command("resume 1")
                phone.wait_for("from state LinphoneCallResuming to LinphoneCallStreamsRunning")
                phone.command("terminate")
                phone.wait_for("to LinphoneCallReleased")
            finally:
                bare.terminate()
                baresip_out = output(bare)
        phone.wait_for("to LinphoneCallReleased")
    finally:
        phone_out = phone.output()
    detail = (
        f"baresip:\n{baresip_out}\nlinphonec:\n{phone_out}\nsipgrid:\n{server.log_text()[-2000:]}"
    )
    assert "Call established" in baresip_out, detail
    assert "connected." in phone_out and "ended (No error)" in phone_out, detail
    # the caller's BYE was answered 200 by the callee
    assert "call.ended sip:" in server.log_text(), detail
    if caller == "baresip":
        assert "Call with sip:1002@sip.local;transport=udp terminated" in baresip_out, detail
        followed = 2  # the caller's ACK and BYE
    else:
        assert baresip_out.count("got re-INVITE") == 2, detail
        assert "session closed" in baresip_out, detail  # linphonec's BYE
        followed = 6  # and the two re-INVITEs and their ACKs
    # each routed by the EdgePort on the dialog's route set
    assert event(page(metrics), "dialog_followed") == followed, detail


def test_linphonec_cancels_its_call_while_baresip_rings(
    baresip: str, linphonec: str, sipgrid: Wiring, tmp_path: Path
) -> None:
    """A CANCEL through sipgrid (RFC 3261 section 16.10): 200 for the CANCEL, the callee's
    487 for the INVITE back to the caller, and no call."""
    server = sipgrid.server
    linphone_dir = tmp_path / "linphonec"
    linphone_dir.mkdir()
    phone = Linphonec(linphonec, linphone_dir, "1002", sipgrid, "udp")
    try:
        phone.wait_for("to [LinphoneRegistrationOk]")
        baresip_dir = configure(tmp_path / "baresip", "1001", "udp", server.port, "manual")
        bare = start(baresip, baresip_dir, 30)
        try:
            wait_for_log(server, "registration sip:1001@sip.local")
            phone.command("call sip:1001@sip.local")
            phone.wait_for("to LinphoneCallOutgoingRinging")
            phone.command("terminate")
            phone.wait_for("to LinphoneCallReleased")
        finally:
            bare.terminate()
            baresip_out = output(bare)
    finally:
        phone_out = phone.output()
    log = phone.log.read_text(errors="replace")
    detail = (
        f"baresip:\n{baresip_out}\nlinphonec:\n{phone_out}\nsipgrid:\n{server.log_text()[-2000:]}"
    )
    assert "Incoming call from" in baresip_out and "session closed" in baresip_out, detail
    assert "Call established" not in baresip_out, detail
    assert "SIP/2.0 487 Request Terminated" in log, detail
    assert "connected." not in phone_out and "call.started" not in server.log_text(), detail


def test_linphonec_transfers_its_call_to_a_third_phone(
    baresip: str, linphonec: str, sipgrid: Wiring, tmp_path: Path
) -> None:
    """A blind transfer (RFC 3515, RFC 5589) through sipgrid: linphonec (1002) calls baresip
    (1001), then REFERs it to 1003, another baresip; 1001 calls 1003 (its own INVITE, with
    its own credentials), tells linphonec how it went in NOTIFYs (the REFER's implicit
    subscription), and linphonec hangs up. 1001 and 1003 talk until 1001 hangs up."""
    server, metrics = sipgrid.server, sipgrid.metrics
    linphone_dir = tmp_path / "linphonec"
    linphone_dir.mkdir()
    phone = Linphonec(linphonec, linphone_dir, "1002", sipgrid, "udp")
    bob_out = carol_out = ""
    try:
        phone.wait_for("to [LinphoneRegistrationOk]")
        bob = start(baresip, configure(tmp_path / "bob", "1001", "udp", server.port), 60)
        carol = start(baresip, configure(tmp_path / "carol", "1003", "udp", server.port), 60)
        try:
            wait_for_log(server, "registration sip:1001@sip.local")
            wait_for_log(server, "registration sip:1003@sip.local")
            phone.command("call sip:1001@sip.local")
            phone.wait_for("to LinphoneCallStreamsRunning")
            phone.command("transfer 1 sip:1003@sip.local")
            phone.wait_for("to LinphoneCallReleased")  # it hung up once the transfer was done
            wait_for_log(server, "call.started sip:1001@sip.local -> sip:1003@sip.local 200")
            bob.terminate()  # hangs up (a BYE to 1003), then quits
            bob_out = output(bob)
            wait_for_log(server, "call.ended sip:1001@sip.local -> sip:1003@sip.local")
        finally:
            bob.terminate()
            bob_out = bob_out or output(bob)
            carol.terminate()
            carol_out = output(carol)
    finally:
        phone_out = phone.output()
    detail = (
        f"1001:\n{bob_out}\n1003:\n{carol_out}\nlinphonec:\n{phone_out}\n"
        f"sipgrid:\n{server.log_text()[-2500:]}"
    )
    assert "has been transfered" in phone_out, detail  # (sic) the 200 in a NOTIFY
    assert "ended (No error)" in phone_out, detail
    assert "transferring call" in bob_out, detail
    assert "Call established: sip:1003@sip.local" in bob_out, detail
    assert "Call established: sip:1001@sip.local" in carol_out, detail
    assert "session closed" in carol_out.split("Call established", 1)[1], detail  # 1001's BYE
    # in linphonec's dialog the ACK, the REFER, the final NOTIFY at least and the BYE; in
    # the new call its ACK and BYE: every one on the dialog's route set
    assert event(page(metrics), "dialog_followed") >= 6, detail


@pytest.fixture(params=["all-in-one", "distributed"])
def behind_nat(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[NatNetwork, Wiring]]:
    """Either wiring on a host of its own (198.51.100.10; every service there), and a lan
    behind a NAT router that gives each flow a source port of its own choosing, for the
    phones."""
    start = all_in_one if request.param == "all-in-one" else distributed
    with nat_network() as net:
        tls = tls_files(tmp_path / "tls", net.server_name)
        with start(
            tmp_path / "sipgrid",
            host=net.server_ip,
            port=5060,
            under=net.run_in("server"),
            transports=("tls",),
            edgeport={"securityContext": tls},
        ) as server:
            yield net, Wiring(server, "", tmp_path / "tls" / "ca.pem", net.server_name)


@pytest.mark.parametrize("transport", ["udp", "tls"])
@pytest.mark.parametrize("caller", ["baresip", "linphonec"])
def test_phones_behind_a_nat_call_each_other(
    baresip: str,
    linphonec: str,
    behind_nat: tuple[NatNetwork, Wiring],
    tmp_path: Path,
    caller: str,
    transport: str,
) -> None:
    """baresip and linphonec on a lan (10.0.0.2) behind a masquerading router: sipgrid sees
    them at 198.51.100.1, each on a port the router chose. Their Contacts name 10.0.0.2,
    which sipgrid's host has no route to, so every request to a phone must go where its
    REGISTER came from (RFC 3581's received and rport; the router's mapping), and the call
    still crosses the router both ways, hairpinning on it. linphonec on TLS: sipgrid can
    reach it only down the connection it opened from behind the router."""
    net, sipgrid = behind_nat
    server = sipgrid.server
    lan = net.run_in("lan")
    linphone_dir = tmp_path / "linphonec"
    linphone_dir.mkdir()
    phone = Linphonec(linphonec, linphone_dir, "1002", sipgrid, transport, under=lan)
    baresip_dir = configure(
        tmp_path / "baresip", "1001", "udp", server.port, host=net.lan_ip, server_host=net.server_ip
    )
    try:
        phone.wait_for("to [LinphoneRegistrationOk]")
        if caller == "baresip":  # it hangs up as it quits, after 6 s
            bare = start(baresip, baresip_dir, 6, "/dial sip:1002@sip.local", under=lan)
            baresip_out = output(bare)
            phone.wait_for("to LinphoneCallReleased")
        else:
            bare = start(baresip, baresip_dir, 30, under=lan)
            try:
                wait_for_log(server, "registration sip:1001@sip.local")
                phone.command("call sip:1001@sip.local")
                phone.wait_for("to LinphoneCallStreamsRunning")
                phone.command("terminate")
                phone.wait_for("to LinphoneCallReleased")
            finally:
                bare.terminate()
                baresip_out = output(bare)
    finally:
        phone_out = phone.output()
    log = server.log_text()
    detail = f"baresip:\n{baresip_out}\nlinphonec:\n{phone_out}\nsipgrid:\n{log[-3000:]}"
    # baresip registered its lan address (linphonec, told its public one by the 401's Via,
    # registered that instead)
    assert re.search(rf"registration sip:1001@sip.local sip:1001-\S+@{net.lan_ip}:", log), detail
    assert "Call established" in baresip_out, detail
    assert "connected." in phone_out and "ended (No error)" in phone_out, detail
    parties = "1001@sip.local -> sip:1002" if caller == "baresip" else "1002@sip.local -> sip:1001"
    assert f"call.ended sip:{parties}@sip.local" in log, detail  # its BYE answered
