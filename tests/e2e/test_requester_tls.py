"""The Requester over TLS (Routr's SendMessage to a trunk with transport=tls): Kamailio
with its tls module as the provider's registrar challenges a REGISTER sent through the
Requester's gRPC contract; given the trunk's credentials the Requester answers the
challenge itself and Kamailio accepts the REGISTER."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipgrid.api.types import NetInterface, Transport
from sipgrid.services.edgeport.tls import self_signed
from sipgrid.services.grpc_servers import start_server_bound
from sipgrid.services.requester.requester import PLACEHOLDER_BRANCH, GrpcRequester, requester_sender
from sipgrid.sip import Request, parse

from .harness import KAMAILIO_MODULES, free_port, kamailio

REGISTRAR = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=tls:127.0.0.1:{tls}
enable_tls=yes
mpath="{modules}"
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
modparam("usrloc", "db_mode", 0)

request_route {{
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "provider-secret", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        save("location");
        exit;
    }}
    sl_send_reply("403", "Registrations Only");
}}
"""

TLS_CFG = """[server:default]
method = TLSv1.2+
certificate = {cert}
private_key = {key}
"""


def test_a_register_goes_to_a_tls_registrar_through_the_requester(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(KAMAILIO_MODULES, "tls.so").exists():
        pytest.fail("kamailio-tls-modules is missing: run `make test`", pytrace=False)
    directory = tmp_path / "kamailio"
    directory.mkdir()
    cert, key = self_signed(directory, ["provider.example", "127.0.0.1"])
    (directory / "tls.cfg").write_text(TLS_CFG.format(cert=cert, key=key))
    monkeypatch.setenv("SIPGRID_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REQUESTER_CA_FILE", str(cert))  # the provider's certificate is checked

    def write(cfg: Path) -> int:
        port = free_port()
        cfg.write_text(
            REGISTRAR.format(tls=port, modules=KAMAILIO_MODULES, tls_cfg=directory / "tls.cfg")
        )
        return port

    with kamailio(directory, write) as tls_port:

        async def scenario() -> tuple[int, int, int]:
            sender = await requester_sender("127.0.0.1")
            server, port = await start_server_bound("127.0.0.1:0", requester=sender)
            client = GrpcRequester(f"127.0.0.1:{port}")
            where = NetInterface("127.0.0.1", tls_port, Transport.TLS)
            try:
                challenged = await client.send(register_request(1), where)
                assert challenged is not None, "no answer over TLS"
                # with sipgrid's credentials fields the Requester answers the challenge
                accepted = await client.send(
                    register_request(2), where, credentials=("sipgrid", "provider-secret")
                )
                assert accepted is not None
                wrong = await client.send(register_request(4), where, credentials=("sipgrid", "x"))
                assert wrong is not None
                return challenged.status, accepted.status, wrong.status
            finally:
                await client.close()
                await server.stop(None)
                await sender.stop()

        # Kamailio challenges again when the answer is wrong: the Requester answers once
        assert asyncio.run(scenario()) == (401, 200, 401)


def register_request(cseq: int) -> Request:
    message = parse(
        (
            "REGISTER sip:provider.example;transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 0.0.0.0:9;branch={PLACEHOLDER_BRANCH}\r\n"
            "From: <sip:sipgrid@provider.example>;tag=rq1\r\n"
            "To: <sip:sipgrid@provider.example>\r\n"
            f"Call-ID: requester-tls\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
            "Contact: <sip:sg-trunk-t1@127.0.0.1:5060>\r\nExpires: 60\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message
