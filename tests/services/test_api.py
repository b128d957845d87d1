"""The Connect API over gRPC with Routr's stubs: CRUD, error codes, and API keys."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import grpc
import pytest

from sipgrid.pb import (
    acl_pb2,
    acl_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    credentials_pb2,
    credentials_pb2_grpc,
    domains_pb2,
    domains_pb2_grpc,
)
from sipgrid.services.apiserver.server import start_apiserver
from sipgrid.services.connect.api_resources import ApiResources


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_crud_errors_and_auth(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    if backend == "postgresql":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    async def scenario() -> None:
        api = await start_apiserver(  # ports the system picks: no race with other tests
            data_dir=tmp_path / "data", internal_addr="127.0.0.1:0", external_addr="127.0.0.1:0"
        )
        internal, external = (f"127.0.0.1:{port}" for port in api.ports)
        try:
            assert api.first_key is not None and api.first_key.startswith("sg_")
            async with grpc.aio.insecure_channel(internal) as channel:
                domains = domains_pb2_grpc.DomainsStub(channel)
                agents = agents_pb2_grpc.AgentsStub(channel)
                creds = credentials_pb2_grpc.CredentialsServiceStub(channel)
                domain = await domains.Create(
                    domains_pb2.CreateDomainRequest(name="Local", domain_uri="sip.local")
                )
                assert (
                    domain.ref
                    and domain.domain_uri == "sip.local"
                    and domain.api_version == "v2beta1"
                )
                secret = await creds.Create(
                    credentials_pb2.CreateCredentialsRequest(
                        name="Alice", username="1001", password="s3cret"
                    )
                )
                assert secret.password == "s3cret"  # the internal port serves the services
                agent = await agents.Create(
                    agents_pb2.CreateAgentRequest(
                        name="Alice",
                        username="1001",
                        domain_ref=domain.ref,
                        credentials_ref=secret.ref,
                        enabled=True,
                        privacy=agents_pb2.NONE,
                    )
                )
                assert (
                    agent.domain.domain_uri == "sip.local"
                    and agent.credentials.username == "1001"
                    and agent.enabled
                )
                got = await agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref))
                assert got == agent
                updated = await agents.Update(
                    agents_pb2.UpdateAgentRequest(
                        ref=agent.ref, name="Alice B.", enabled=True, max_contacts=3
                    )
                )
                assert (
                    updated.name == "Alice B."
                    and updated.max_contacts == 3
                    and updated.username == "1001"
                )
                page = await agents.List(agents_pb2.ListAgentsRequest(page_size=10))
                assert [a.ref for a in page.items] == [agent.ref] and page.next_page_token == ""
                found = await agents.FindBy(
                    agents_pb2.FindByRequest(field_name="username", field_value="1001")
                )
                assert [a.ref for a in found.items] == [agent.ref]

                for call, code, words in [
                    (
                        agents.Create(
                            agents_pb2.CreateAgentRequest(
                                name="X", username="1002", domain_ref="nope"
                            )
                        ),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "domain_ref",
                    ),
                    (
                        agents.Get(agents_pb2.GetAgentRequest(ref="missing")),
                        grpc.StatusCode.NOT_FOUND,
                        "missing",
                    ),
                    (
                        domains.Create(
                            domains_pb2.CreateDomainRequest(name="Again", domain_uri="sip.local")
                        ),
                        grpc.StatusCode.ALREADY_EXISTS,
                        "domain_uri",
                    ),
                    (
                        domains.Delete(domains_pb2.DeleteDomainRequest(ref=domain.ref)),
                        grpc.StatusCode.FAILED_PRECONDITION,
                        agent.ref,
                    ),
                    (
                        agents.FindBy(
                            agents_pb2.FindByRequest(field_name="password", field_value="x")
                        ),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "field_name",
                    ),
                ]:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call
                    assert info.value.code() is code and words in (info.value.details() or ""), (
                        info.value.details()
                    )

                await agents.Delete(agents_pb2.DeleteAgentRequest(ref=agent.ref))
                await domains.Delete(domains_pb2.DeleteDomainRequest(ref=domain.ref))
                assert api.store.password(secret.ref) == "s3cret"

            async with grpc.aio.insecure_channel(external) as channel:
                acls = acl_pb2_grpc.ACLServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await acls.List(acl_pb2.ListACLsRequest())
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await acls.List(
                        acl_pb2.ListACLsRequest(), metadata=[("authorization", "Bearer sg_wrong")]
                    )
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
                created = await acls.Create(
                    acl_pb2.CreateACLRequest(name="Office", allow=["10.0.0.0/8"]),
                    metadata=[("authorization", f"Bearer {api.first_key}")],
                )
                assert list(created.allow) == ["10.0.0.0/8"]
                outside = credentials_pb2_grpc.CredentialsServiceStub(channel)
                bearer = [("authorization", f"Bearer {api.first_key}")]
                made = await outside.Create(
                    credentials_pb2.CreateCredentialsRequest(
                        name="Bob", username="1002", password="hidden"
                    ),
                    metadata=bearer,
                )
                assert (
                    made.password == ""
                    and (
                        await outside.Get(
                            credentials_pb2.GetCredentialsRequest(ref=made.ref), metadata=bearer
                        )
                    ).password
                    == ""
                )
                listed = await outside.List(
                    credentials_pb2.ListCredentialsRequest(), metadata=bearer
                )
                assert all(item.password == "" for item in listed.items)
                extra = api.keys.create("ci")
                await acls.List(
                    acl_pb2.ListACLsRequest(), metadata=[("authorization", f"Bearer {extra}")]
                )
                assert api.keys.revoke(extra)
                await asyncio.sleep(1.1)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await acls.List(
                        acl_pb2.ListACLsRequest(), metadata=[("authorization", f"Bearer {extra}")]
                    )
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
                api.users.set("admin", "changeit")
                basic = "Basic " + base64.b64encode(b"admin:changeit").decode()
                await acls.List(acl_pb2.ListACLsRequest(), metadata=[("authorization", basic)])
                wrong = "Basic " + base64.b64encode(b"admin:nope").decode()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await acls.List(acl_pb2.ListACLsRequest(), metadata=[("authorization", wrong)])
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        finally:
            await api.stop()

    asyncio.run(scenario())


def test_a_distributed_connect_reloads_only_when_the_store_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connect asks the internal port for the store's revision twice a second and reads
    the resources again only when it changed (it read them all every half second, which
    cost the idle APIServer 7 % of a core)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)

    async def scenario() -> None:
        api = await start_apiserver(
            data_dir=tmp_path / "data", internal_addr="127.0.0.1:0", external_addr="127.0.0.1:0"
        )
        resources = ApiResources(f"127.0.0.1:{api.ports[0]}")
        try:
            await resources.refresh()
            await resources.refresh()
            assert resources.reloads == 1 and resources().domain("sip.local") is None
            api.store.create("Domain", {"name": "Local", "domain_uri": "sip.local"})
            await resources.refresh()
            await resources.refresh()
            assert resources.reloads == 2 and resources().domain("sip.local") is not None
        finally:
            await api.stop()

    asyncio.run(scenario())
