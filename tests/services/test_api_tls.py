"""The external API over TLS, with and without client certificates; UNAVAILABLE when the
database is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from sipgrid.pb import domains_pb2, domains_pb2_grpc
from sipgrid.services.apiserver.api import ConnectApi
from sipgrid.services.apiserver.database import make_engine
from sipgrid.services.apiserver.server import _serve, start_apiserver
from sipgrid.services.apiserver.store import Cipher, ResourceStore, Unavailable
from tests.certs import certificate as _certificate
from tests.certs import pem as _pem
from tests.e2e.harness import free_port


@pytest.mark.parametrize("client_certificates", [False, True])
def test_external_api_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_certificates: bool
) -> None:
    ca = _certificate("sipgrid test CA", ca=True)
    server_cert, server_key = _pem(*_certificate("localhost", ca))
    client_cert, client_key = _pem(*_certificate("client", ca))
    ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)
    (tmp_path / "server.pem").write_bytes(server_cert)
    (tmp_path / "server.key").write_bytes(server_key)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    monkeypatch.setenv("TLS_CERT", str(tmp_path / "server.pem"))
    monkeypatch.setenv("TLS_KEY", str(tmp_path / "server.key"))
    if client_certificates:
        monkeypatch.setenv("TLS_CLIENT_CA", str(tmp_path / "ca.pem"))
    monkeypatch.delenv("DATABASE_URL", raising=False)

    async def scenario() -> None:
        api = await start_apiserver(
            data_dir=tmp_path / "data", internal_addr="127.0.0.1:0", external_addr="127.0.0.1:0"
        )
        port = api.ports[1]
        bearer = [("authorization", f"Bearer {api.first_key}")]
        try:
            with_cert = grpc.ssl_channel_credentials(
                root_certificates=ca_pem, private_key=client_key, certificate_chain=client_cert
            )
            async with grpc.aio.secure_channel(f"localhost:{port}", with_cert) as channel:
                reply = await domains_pb2_grpc.DomainsStub(channel).List(
                    domains_pb2.ListDomainRequest(), metadata=bearer
                )
                assert list(reply.items) == []
            without_cert = grpc.ssl_channel_credentials(root_certificates=ca_pem)
            async with grpc.aio.secure_channel(f"localhost:{port}", without_cert) as channel:
                call = domains_pb2_grpc.DomainsStub(channel).List(
                    domains_pb2.ListDomainRequest(), metadata=bearer, timeout=5
                )
                if client_certificates:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call
                    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                else:
                    await call
            async with grpc.aio.insecure_channel(
                f"localhost:{port}"
            ) as channel:  # plain text is refused
                with pytest.raises(grpc.aio.AioRpcError):
                    await domains_pb2_grpc.DomainsStub(channel).List(
                        domains_pb2.ListDomainRequest(), metadata=bearer, timeout=5
                    )
        finally:
            await api.stop()

    asyncio.run(scenario())


def test_database_down_gives_unavailable() -> None:
    engine = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    )
    store = ResourceStore(engine, Cipher())
    with pytest.raises(Unavailable, match="database is unavailable"):
        store.get("Domain", "x")

    async def scenario() -> None:
        server, port = await _serve(ConnectApi(store), "127.0.0.1:0", [])
        address = f"127.0.0.1:{port}"
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await domains_pb2_grpc.DomainsStub(channel).Create(
                        domains_pb2.CreateDomainRequest(name="x", domain_uri="a.b")
                    )
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE and "database" in (
                    info.value.details() or ""
                )
        finally:
            await server.stop(None)

    asyncio.run(scenario())
