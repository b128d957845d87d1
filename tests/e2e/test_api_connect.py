"""A change through the Connect API reaches a running Connect processor within a second,
in process (all-in-one) and over gRPC from the APIServer (distributed)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from sipgrid.pb import (
    agents_pb2,
    agents_pb2_grpc,
    credentials_pb2,
    credentials_pb2_grpc,
    domains_pb2,
    domains_pb2_grpc,
)

from . import scenarios
from .harness import all_in_one, distributed, run_sipp


@pytest.mark.parametrize("wiring", ["one", "distributed"])
def test_register_follows_agents_created_and_deleted_through_the_api(
    tmp_path: Path, wiring: str
) -> None:
    start = all_in_one if wiring == "one" else distributed
    with start(tmp_path / "sipgrid") as sipgrid:

        def register(final: int) -> None:
            result = run_sipp(
                tmp_path,
                f"register-{final}-{time.monotonic_ns()}",
                scenarios.register(final),
                server_port=sipgrid.port,
                user="2002",
                password="api-made",
                keys={"contact_port": "7100"},
            )
            assert result.ok, result.output + sipgrid.log_text()

        register(403)  # no such agent yet
        with grpc.insecure_channel(f"127.0.0.1:{sipgrid.api_port}") as channel:
            domain = (
                domains_pb2_grpc.DomainsStub(channel)
                .FindBy(domains_pb2.FindByRequest(field_name="domain_uri", field_value="sip.local"))
                .items[0]
            )
            secret = credentials_pb2_grpc.CredentialsServiceStub(channel).Create(
                credentials_pb2.CreateCredentialsRequest(
                    name="2002", username="2002", password="api-made"
                )
            )
            agents = agents_pb2_grpc.AgentsStub(channel)
            agent = agents.Create(
                agents_pb2.CreateAgentRequest(
                    name="Made by the API",
                    username="2002",
                    domain_ref=domain.ref,
                    credentials_ref=secret.ref,
                    enabled=True,
                )
            )
            time.sleep(1.0)
            register(200)
            agents.Delete(agents_pb2.DeleteAgentRequest(ref=agent.ref))
            time.sleep(1.0)
            register(403)
