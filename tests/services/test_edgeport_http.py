"""The EdgePort's HTTP side: /healthz, /readyz (fails while the processor is down) and
/metrics (counters move with the traffic)."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.grpc_clients import GrpcProcessor
from sipgrid.services.grpc_servers import start_server
from tests.e2e.harness import free_port

from .helpers import connect_processor, edgeport_config, request_bytes, udp_peer


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        return reply.status, await reply.text()


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_health_and_metrics_move_with_the_traffic() -> None:
    async def scenario() -> None:
        config = edgeport_config(0, http={"bindAddr": "127.0.0.1:0"})
        edgeport = EdgePort(config, connect_processor())
        await edgeport.start()
        assert edgeport.http is not None
        http, sip = edgeport.http.port, edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            assert await get(http, "/healthz") == (200, "ok\n")
            assert (await get(http, "/readyz"))[0] == 200
            before = (await get(http, "/metrics"))[1]
            for n in range(3):
                options = request_bytes(
                    "OPTIONS", peer.port, uri="sip:127.0.0.1", branch=f"z9hG4bKm{n}"
                )
                peer.send(options, sip)
                assert (await peer.response()).status == 200
            after = (await get(http, "/metrics"))[1]
            requests = 'method="OPTIONS"'
            assert (
                metric(after, "sipgrid_sip_requests_total", requests)
                == metric(before, "sipgrid_sip_requests_total", requests) + 3
            )
            assert metric(after, "sipgrid_processor_seconds_count") >= 3
            assert "sipgrid_transactions_active" in after and "sipgrid_connections_open" in after
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_readyz_fails_while_the_processor_is_down() -> None:
    async def scenario() -> None:
        address = f"127.0.0.1:{free_port()}"
        config = edgeport_config(0, http={"bindAddr": "127.0.0.1:0"})
        edgeport = EdgePort(config, GrpcProcessor(address, timeout=1.0))
        await edgeport.start()
        assert edgeport.http is not None
        try:
            status, text = await get(edgeport.http.port, "/readyz")
            assert status == 503 and "processor" in text
            server = await start_server(address, processor=connect_processor())
            try:
                for _ in range(20):  # the channel reconnects after its backoff
                    if (await get(edgeport.http.port, "/readyz"))[0] == 200:
                        break
                    await asyncio.sleep(0.5)
                else:
                    raise AssertionError("/readyz stayed 503 with the processor up")
            finally:
                await server.stop(grace=None)
        finally:
            await edgeport.stop()

    asyncio.run(scenario())
