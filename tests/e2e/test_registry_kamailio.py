"""Kamailio from Debian as the provider's registrar, with digest: sipgrid's Registry
registers trunk-local there (the binding shows in `kamcmd ul.dump`), refreshes it before
Kamailio's 10 s run out, takes the call Kamailio sends to the registered contact on to
the number's agent, and unregisters when the trunk stops registering through the API."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipgrid.sdk import ConnectClient

from . import scenarios
from .harness import (
    KAMAILIO_MODULES,
    all_in_one,
    free_port,
    kamailio,
    register_agent,
    run_sipp,
    sipp_server,
    wait_exit,
)

REGISTRAR_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "ctl.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 10)
modparam("registrar", "min_expires", 5)
modparam("ctl", "binrpc", "unix:{ctl}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "provider-secret", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        if ($au != "sipgrid") {{ sl_send_reply("403", "Not Our Customer"); exit; }}
        save("location");
        exit;
    }}
    record_route();
    if (!lookup("location")) {{ sl_send_reply("404", "Not Registered"); exit; }}
    t_relay();
}}
"""


@contextlib.contextmanager
def kamailio_registrar(directory: Path) -> Iterator[tuple[int, Path]]:
    """Kamailio as a registrar on a free UDP port; yields it and its control socket."""
    if shutil.which("kamcmd") is None:
        pytest.fail("kamailio is missing: run `make test`", pytrace=False)
    ctl = directory / "kamailio_ctl"

    def write(cfg: Path) -> int:
        port = free_port()
        cfg.write_text(REGISTRAR_CFG.format(port=port, modules=KAMAILIO_MODULES, ctl=ctl))
        return port

    with kamailio(directory, write) as port:
        yield port, ctl


def bindings(ctl: Path) -> str:
    done = subprocess.run(
        ["kamcmd", "-s", f"unix:{ctl}", "ul.dump"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout + done.stderr


def until(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_registry_keeps_a_trunk_registered_with_kamailio(tmp_path: Path) -> None:
    with kamailio_registrar(tmp_path / "kamailio") as (kamailio, ctl):

        def register_trunk(resources: list[dict[str, Any]]) -> None:
            for resource in resources:
                if resource["ref"] == "trunk-local":
                    outbound = resource["spec"]["outbound"]
                    outbound["sendRegister"] = True
                    for uri in outbound["uris"]:
                        uri["uri"]["port"] = kamailio

        with (
            sipp_server(tmp_path, "alice", scenarios.uas("answer")) as (alice_port, alice),
            all_in_one(tmp_path / "sipgrid", edit_pstn=register_trunk) as sipgrid,
        ):
            contact = f"sg-trunk-trunk-local@127.0.0.1:{sipgrid.port}"
            until("the binding in Kamailio", lambda: contact in bindings(ctl))
            until(
                "a refresh before Kamailio's 10 s run out",
                lambda: len(re.findall(r"trunk trunk-local registered", sipgrid.log_text())) >= 2,
            )
            assert "for 10 s" in sipgrid.log_text()  # the expiry Kamailio granted
            register_agent(tmp_path, sipgrid, alice_port)
            # the provider's customer calls the DID: Kamailio finds our contact
            did = run_sipp(
                tmp_path,
                "did-through-kamailio",
                scenarios.did_call(
                    "+17853178070", "provider.example", to_contact="sip:sipgrid@127.0.0.1"
                ),
                server_port=kamailio,
            )
            assert did.ok, did.output + sipgrid.log_text()[-3000:]
            assert wait_exit(alice) == 0
            client = ConnectClient(f"127.0.0.1:{sipgrid.api_port}")
            client.trunks.update("trunk-local", send_register=False)
            until("the binding gone from Kamailio", lambda: contact not in bindings(ctl))
            assert "trunk trunk-local unregistered" in sipgrid.log_text()
