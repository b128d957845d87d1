"""SIP over TLS with a peer no one here wrote: Kamailio and its tls module.

sipp has no TLS in Debian's build, so sipp talks UDP to a Kamailio on loopback that
relays everything to sipgrid over TLS (record-routing itself): a REGISTER with digest,
then a call that a sipp UAS on UDP answers; 200, ACK and BYE cross sipgrid's TLS side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgrid.services.edgeport.tls import self_signed

from . import scenarios
from .harness import (
    KAMAILIO_MODULES,
    Sipgrid,
    all_in_one,
    free_port,
    registered_callee,
    run_sipp,
    wait_exit,
)
from .harness import kamailio as start_kamailio

MODULES = KAMAILIO_MODULES

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{udp}
listen=tls:127.0.0.1:{tls}
enable_tls=yes
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (!is_method("REGISTER")) {{ record_route(); }}
    $du = "sip:127.0.0.1:{sipgrid};transport=tls";
    t_relay();
}}
"""

TLS_CFG = """[server:default]
method = TLSv1.2+
certificate = {cert}
private_key = {key}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


@pytest.fixture
def sipgrid(tmp_path: Path) -> Iterator[Sipgrid]:
    with all_in_one(tmp_path / "sipgrid", transports=("tls",)) as server:
        yield server


@pytest.fixture
def kamailio(tmp_path: Path, sipgrid: Sipgrid) -> Iterator[int]:
    """A Kamailio relaying UDP from sipp to sipgrid over TLS; yields its UDP port."""
    if not Path(MODULES, "tls.so").exists():
        pytest.fail("kamailio-tls-modules is missing: run `make test`", pytrace=False)
    directory = tmp_path / "kamailio"
    directory.mkdir()
    cert, key = self_signed(directory, ["localhost", "127.0.0.1"])
    (directory / "tls.cfg").write_text(TLS_CFG.format(cert=cert, key=key))

    def write(cfg: Path) -> int:
        udp, tls = free_port(), free_port()
        cfg.write_text(
            KAMAILIO_CFG.format(
                udp=udp,
                tls=tls,
                modules=MODULES,
                tls_cfg=directory / "tls.cfg",
                sipgrid=sipgrid.ports["tls"],
            )
        )
        return udp

    with start_kamailio(directory, write) as udp:
        yield udp


def test_register_and_call_through_kamailio_over_tls(
    tmp_path: Path, sipgrid: Sipgrid, kamailio: int
) -> None:
    registered = run_sipp(
        tmp_path, "register-tls", scenarios.register(200), server_port=kamailio, user="1001"
    )
    assert registered.ok, registered.output + sipgrid.log_text()[-2000:]
    with registered_callee(tmp_path, sipgrid) as uas:
        call = run_sipp(tmp_path, "call-tls", scenarios.call("caller"), server_port=kamailio)
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0
    log = sipgrid.log_text()
    assert "tls:" in log  # sipgrid listened on TLS


def test_a_plain_tcp_client_cannot_speak_to_the_tls_port(sipgrid: Sipgrid) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", sipgrid.ports["tls"]), timeout=3) as sock:
        sock.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n")
        sock.settimeout(3)
        try:
            data = sock.recv(100)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert not data.startswith(b"SIP/2.0")
