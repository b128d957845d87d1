"""The Registry in the all-in-one: trunk-local (pstn.yaml, sendRegister on here)
registers with a sipp registrar that asks for credentials and grants 10 s; sipgrid
registers again before they run out; then the provider calls the registered Contact
with the number in the To header, and the call reaches the number's agent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import scenarios
from .harness import all_in_one, run_sipp, sipp_server, wait_exit


def test_a_trunk_registers_refreshes_and_takes_calls_at_its_contact(tmp_path: Path) -> None:
    with sipp_server(
        tmp_path, "registrar", scenarios.registrar(cycles=2, expires=10), extra=["-timeout", "60"]
    ) as (registrar_port, registrar):

        def register_trunk(resources: list[dict[str, Any]]) -> None:
            for resource in resources:
                if resource["ref"] == "trunk-local":
                    outbound = resource["spec"]["outbound"]
                    outbound["sendRegister"] = True
                    for uri in outbound["uris"]:
                        uri["uri"]["port"] = registrar_port

        with (
            sipp_server(tmp_path, "alice", scenarios.uas("answer")) as (alice_port, alice),
            all_in_one(tmp_path / "sipgrid", edit_pstn=register_trunk) as sipgrid,
        ):
            # two cycles: the first registration, and the refresh before 10 s are up
            assert wait_exit(registrar, timeout=30) == 0, sipgrid.log_text()[-3000:]
            log = sipgrid.log_text()
            granted = re.findall(r"trunk trunk-local registered with \S+ for (\d+) s", log)
            assert granted == ["10", "10"], log[-3000:]
            registered = run_sipp(
                tmp_path,
                "register-1001",
                scenarios.register(200),
                server_port=sipgrid.port,
                keys={"contact_port": str(alice_port)},
            )
            assert registered.ok, registered.output
            contact = f"sip:sg-trunk-trunk-local@127.0.0.1:{sipgrid.port}"
            did = run_sipp(
                tmp_path,
                "did-to-contact",
                scenarios.did_call("+17853178070", "provider.example", to_contact=contact),
                server_port=sipgrid.port,
            )
            assert did.ok, did.output + sipgrid.log_text()[-3000:]
            assert wait_exit(alice) == 0
