"""A callee behind NAT: its Contact is unreachable (127.0.0.99, where nobody listens), so
the INVITE and every in-dialog request must go where its REGISTER really came from."""

from __future__ import annotations

import asyncio

from sipgrid.services.edgeport.server import EdgePort
from sipgrid.sip import Challenge, Request, make_response, parse
from sipgrid.sip.digest import answer

from .helpers import UdpPeer, connect_processor, edgeport_config, udp_peer

HIDDEN = "127.0.0.99:5555"  # what the callee believes its address is


def register(peer_port: int, auth: str = "") -> bytes:
    return (
        "REGISTER sip:sip.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HIDDEN};branch=z9hG4bKreg{len(auth)};rport\r\n"
        "From: <sip:1002@sip.local>;tag=r1\r\nTo: <sip:1002@sip.local>\r\n"
        "Call-ID: nat-reg\r\nCSeq: " + ("2" if auth else "1") + " REGISTER\r\n"
        f"Contact: <sip:1002@{HIDDEN}>\r\nExpires: 60\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
    ).encode()


def invite(peer_port: int, cseq: int, auth: str = "") -> bytes:
    return (
        "INVITE sip:1002@sip.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer_port};branch=z9hG4bKinv{cseq};rport\r\n"
        "From: <sip:1001@sip.local>;tag=caller1\r\nTo: <sip:1002@sip.local>\r\n"
        f"Call-ID: nat-call\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@127.0.0.1:{peer_port}>\r\n"
        f"Max-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
    ).encode()


async def next_request(peer: UdpPeer) -> Request:
    while True:
        message = parse(await peer.recv(timeout=3.0))
        if isinstance(message, Request):
            return message


def test_in_dialog_requests_reach_a_callee_behind_nat() -> None:
    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0), connect_processor())
        await edgeport.start()
        port = edgeport.listening_points[0].port
        caller, callee = await udp_peer(), await udp_peer()
        try:
            callee.send(register(callee.port), port)
            challenge = Challenge.parse((await callee.response()).get("WWW-Authenticate") or "")
            creds = answer(
                challenge,
                method="REGISTER",
                uri="sip:sip.local",
                username="1002",
                password="1002-secret",
            )
            callee.send(register(callee.port, f"Authorization: {creds}\r\n"), port)
            assert (await callee.response()).status == 200

            caller.send(invite(caller.port, 1), port)
            assert (await caller.response()).status == 100
            challenged = await caller.response()
            assert challenged.status == 407
            proxy = Challenge.parse(challenged.get("Proxy-Authenticate") or "")
            creds = answer(
                proxy,
                method="INVITE",
                uri="sip:1002@sip.local",
                username="1001",
                password="1001-secret",
            )
            caller.send(invite(caller.port, 2, f"Proxy-Authorization: {creds}\r\n"), port)
            assert (await caller.response()).status == 100

            forwarded = await next_request(callee)  # reached through the NAT binding
            assert forwarded.method == "INVITE" and str(forwarded.uri) == f"sip:1002@{HIDDEN}"
            assert forwarded.max_forwards == 69  # a hop spent
            ok = make_response(
                forwarded, 200, to_tag="callee1", headers=[("Contact", f"<sip:1002@{HIDDEN}>")]
            )
            for value in forwarded.get_all("Record-Route"):
                ok.add("Record-Route", value)
            callee.send(ok.serialize(), port)
            answered = await caller.response()
            assert answered.status == 200
            route_set = list(reversed(answered.values("Record-Route")))

            bye = (
                f"BYE sip:1002@{HIDDEN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bKbye;rport\r\n"
                + "".join(f"Route: {r}\r\n" for r in route_set)
                + "From: <sip:1001@sip.local>;tag=caller1\r\nTo: <sip:1002@sip.local>;tag=callee1\r\n"
                "Call-ID: nat-call\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            caller.send(bye, port)
            reached = await next_request(callee)  # not lost at 127.0.0.99
            assert reached.method == "BYE" and reached.from_.tag == "caller1"
            callee.send(make_response(reached, 200).serialize(), port)
            assert (await caller.response()).status == 200
        finally:
            caller.close()
            callee.close()
            await edgeport.stop()

    asyncio.run(scenario())
