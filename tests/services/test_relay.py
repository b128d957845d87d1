"""sipgrid is no open relay: a request that only looks in-dialog (a To tag, perhaps a Route
naming sipgrid) is refused unless its top Route is a Record-Route that sipgrid signed for
that dialog (RFC 3261 sections 16.4 and 16.12). The victim is a real socket on loopback
that must receive nothing."""

from __future__ import annotations

import asyncio

import pytest

from .helpers import UdpPeer, connect_processor, serving, udp_peer


def stranger(method: str, attacker: int, victim: int, *, route: str = "", n: int = 1) -> bytes:
    return (
        f"{method} sip:victim@127.0.0.1:{victim} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{attacker};branch=z9hG4bKrelay{method}{n};rport\r\n"
        + (f"Route: {route}\r\n" if route else "")
        + "From: <sip:attacker@evil.example>;tag=a1\r\n"
        "To: <sip:victim@victim.example>;tag=invented\r\n"
        f"Call-ID: relay-{method}-{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:attacker@127.0.0.1:{attacker}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def final_status(peer: UdpPeer) -> int:
    while True:
        response = await peer.response()
        if response.status >= 200:
            return response.status


@pytest.mark.parametrize("method", ["INVITE", "MESSAGE", "BYE", "OPTIONS", "INFO", "NOTIFY"])
def test_an_invented_dialog_is_refused_and_the_victim_hears_nothing(method: str) -> None:
    async def scenario() -> None:
        edgeport, port = await serving(connect_processor())
        attacker, victim = await udp_peer(), await udp_peer()
        forged = [
            "",  # no Route at all: the Request-URI points at the victim
            f"<sip:127.0.0.1:{port};lr>",  # a Route naming sipgrid, not recorded by it
            f"<sip:127.0.0.1:{port};lr;sg-ftag=a1;sg-caller=udp~127.0.0.1~1;"
            f"sg-callee=udp~127.0.0.1~{victim.port};sg-sig=00112233445566778899aabb>",
        ]
        try:
            for n, route in enumerate(forged):
                attacker.send(stranger(method, attacker.port, victim.port, route=route, n=n), port)
                assert await final_status(attacker) == 403, route
            assert await victim.nothing(0.5)
        finally:
            attacker.close()
            victim.close()
            await edgeport.stop()

    asyncio.run(scenario())


def test_an_ack_of_an_invented_dialog_goes_nowhere() -> None:
    async def scenario() -> None:
        edgeport, port = await serving(connect_processor())
        attacker, victim = await udp_peer(), await udp_peer()
        try:
            attacker.send(stranger("ACK", attacker.port, victim.port), port)
            attacker.send(
                stranger(
                    "ACK", attacker.port, victim.port, route=f"<sip:127.0.0.1:{port};lr>", n=2
                ),
                port,
            )
            assert await victim.nothing(0.5)
            assert await attacker.nothing(0.1)
        finally:
            attacker.close()
            victim.close()
            await edgeport.stop()

    asyncio.run(scenario())
