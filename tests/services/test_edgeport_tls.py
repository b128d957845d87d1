"""The TLS listening point: Routr's PKCS#12 key store as it is, PEM files, and client
certificates (mutual TLS) when ``client.authType`` asks for them."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from sipgrid.config import ConfigError
from sipgrid.services.edgeport.config import load_edgeport
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.settings import Settings
from tests.certs import certificate, pem

from .helpers import connect_processor, request_bytes


def write_edgeport(directory: Path, security: dict[str, Any]) -> Path:
    path = directory / "edgeport.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "EdgePort",
                "ref": "edgeport-tls",
                "spec": {
                    "bindAddr": "127.0.0.1",
                    "processor": {"addr": "127.0.0.1:51904"},
                    "transport": [{"protocol": "tls", "port": 0}],
                    "securityContext": security,
                },
            }
        )
    )
    return path


async def options_over_tls(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        request = request_bytes("OPTIONS", 5999, uri="sip:127.0.0.1").replace(b"/UDP", b"/TLS")
        writer.write(request)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    finally:
        writer.close()


def client_context(
    ca_pem: bytes, cert: tuple[bytes, bytes] | None, directory: Path
) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    if cert is not None:
        (directory / "client.pem").write_bytes(cert[0] + cert[1])
        context.load_cert_chain(directory / "client.pem")
    return context


def test_routr_pkcs12_key_store_serves_tls(tmp_path: Path) -> None:
    ca = certificate("sipgrid test CA", ca=True)
    server_cert, server_key = certificate("localhost", ca)
    store = pkcs12.serialize_key_and_certificates(
        b"sip",
        server_key,
        server_cert,
        [ca[0]],
        serialization.BestAvailableEncryption(b"changeit"),
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "domains.p12").write_bytes(store)
    path = write_edgeport(
        tmp_path,
        {"keyStore": "certs/domains.p12", "keyStorePassword": "changeit", "keyStoreType": "pkcs12"},
    )
    ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)

    async def scenario() -> None:
        edgeport = EdgePort(
            load_edgeport(path, Settings.load({})), connect_processor(), data_dir=tmp_path
        )
        await edgeport.start()
        try:
            answer = await options_over_tls(
                edgeport.listening_points[0].port, client_context(ca_pem, None, tmp_path)
            )
            assert answer.startswith(b"SIP/2.0 200 OK")
        finally:
            await edgeport.stop()

    asyncio.run(scenario())
    assert not (tmp_path / "tls").exists()  # no self-signed certificate was needed


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    ca = certificate("sipgrid test CA", ca=True)
    cert_pem, key_pem = pem(*certificate("localhost", ca))
    ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)
    (tmp_path / "sip.pem").write_bytes(cert_pem)
    (tmp_path / "sip.key").write_bytes(key_pem)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    path = write_edgeport(
        tmp_path,
        {
            "certFile": "sip.pem",
            "keyFile": "sip.key",
            "caFile": "ca.pem",
            "client": {"authType": "Enabled"},
        },
    )
    trunk = pem(*certificate("trunk", ca))

    async def scenario() -> None:
        edgeport = EdgePort(
            load_edgeport(path, Settings.load({})), connect_processor(), data_dir=tmp_path
        )
        await edgeport.start()
        port = edgeport.listening_points[0].port
        try:
            answer = await options_over_tls(port, client_context(ca_pem, trunk, tmp_path))
            assert answer.startswith(b"SIP/2.0 200 OK")
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await options_over_tls(port, client_context(ca_pem, None, tmp_path))
        finally:
            await edgeport.stop()

    asyncio.run(scenario())


def test_client_certificates_need_a_trust_store(tmp_path: Path) -> None:
    path = write_edgeport(tmp_path, {"client": {"authType": "Enabled"}})

    async def scenario() -> None:
        edgeport = EdgePort(
            load_edgeport(path, Settings.load({})), connect_processor(), data_dir=tmp_path
        )
        with pytest.raises(
            ConfigError, match=r"spec.securityContext.client.authType: Enabled needs"
        ):
            await edgeport.start()

    asyncio.run(scenario())
