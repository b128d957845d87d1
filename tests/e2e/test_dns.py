"""RFC 3263 next-hop resolution against a real DNS server: Debian's dnsmasq on loopback
serves NAPTR, SRV and A records; the first SRV target is down, the call reaches the
second."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.edgeport.dns import Resolver
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.sip import Target
from tests.services.helpers import edgeport_config, request_bytes, udp_peer

from . import scenarios
from .harness import clashed, free_port, sipp_server, wait_exit


def start_dnsmasq(directory: Path, records: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("dnsmasq")
    if binary is None:
        pytest.fail(
            "dnsmasq is missing: run `make test` (Debian package dnsmasq-base)", pytrace=False
        )
    log = directory / "dnsmasq.log"
    for _ in range(5):
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    "--keep-in-foreground",
                    f"--port={port}",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--user=root",
                    "--log-facility=-",
                    *records,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        time.sleep(0.3)
        if process.poll() is None:
            return process, port
        if not clashed(log.read_text(errors="replace")):
            break
    raise RuntimeError(f"dnsmasq did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture
def dns(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, int, int]]:
    """dnsmasq with trunk.test: NAPTR to _sip._tcp, SRV a (priority 10, down) and b
    (priority 20); yields (dns port, port of a, port of b)."""
    down, up = free_port(), free_port()
    records = [
        "--naptr-record=trunk.test,10,10,S,SIP+D2T,,_sip._tcp.trunk.test",
        f"--srv-host=_sip._tcp.trunk.test,a.trunk.test,{down},10,10",
        f"--srv-host=_sip._tcp.trunk.test,b.trunk.test,{up},20,10",
        "--host-record=a.trunk.test,127.0.0.1",
        "--host-record=b.trunk.test,127.0.0.1",
        f"--srv-host=_sip._udp.udp.test,c.trunk.test,{up},10,10",
        "--host-record=c.trunk.test,127.0.0.1",
    ]
    process, port = start_dnsmasq(tmp_path, records)
    try:
        yield port, down, up
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_the_resolver_reads_naptr_srv_and_a(dns: tuple[int, int, int]) -> None:
    port, down, up = dns
    resolver = Resolver([Transport.UDP, Transport.TCP], f"127.0.0.1:{port}")

    async def lookups() -> None:
        found = await resolver.resolve(Target("trunk.test", None, None, False))
        assert found == [
            NetInterface("127.0.0.1", down, Transport.TCP),
            NetInterface("127.0.0.1", up, Transport.TCP),
        ]
        # no NAPTR: SRV of each transport we have (RFC 3263 section 4.1)
        assert await resolver.resolve(Target("udp.test", None, None, False)) == [
            NetInterface("127.0.0.1", up, Transport.UDP)
        ]
        # a port given: A only (section 4.2)
        assert await resolver.resolve(Target("a.trunk.test", 5080, "udp", False)) == [
            NetInterface("127.0.0.1", 5080, Transport.UDP)
        ]
        assert await resolver.resolve(Target("nothing.test", None, None, False)) == []

    asyncio.run(lookups())


class ByRequestUri:
    """A processor that leaves the next hop to the EdgePort: the Request-URI, located."""

    handles_responses = True

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        return MessageResponse(request.message)


def test_srv_failover_reaches_the_second_target(tmp_path: Path, dns: tuple[int, int, int]) -> None:
    port, down, up = dns
    del down  # nothing listens there: the connection is refused

    async def scenario(uas_port: int) -> None:
        assert uas_port == up
        edgeport = EdgePort(edgeport_config(0), ByRequestUri(), dns_servers=f"127.0.0.1:{port}")
        await edgeport.start()
        sip_port = edgeport.listening_points[0].port
        peer = await udp_peer()
        try:
            message = request_bytes("MESSAGE", peer.port, uri="sip:1002@trunk.test")
            peer.send(message, sip_port)
            while (answer := await peer.response(timeout=8.0)).status < 200:
                pass
            assert answer.status == 200
            assert edgeport.stats["failovers"] == 1
        finally:
            peer.close()
            await edgeport.stop()

    with sipp_server(tmp_path, "uas", scenarios.uas_message(), transport="tcp", port=up) as (
        uas_port,
        uas,
    ):
        asyncio.run(scenario(uas_port))
        assert wait_exit(uas) == 0
