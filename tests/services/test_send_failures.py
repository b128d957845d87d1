"""A next hop that cannot be reached gets a 503 upstream, ends both transactions, and
leaves no task exception behind. Run on uvloop, as `sipgrid run` is, with asyncio debug
on and an exception handler that fails the test on anything left unretrieved."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface
from sipgrid.services.connect.auth import Authenticator
from sipgrid.services.connect.context import signed_flows
from sipgrid.services.connect.processor import ConnectProcessor
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.location.service import MemoryLocation
from sipgrid.sip import Request
from sipgrid.sip.transaction import State

from .helpers import ROOT, UdpPeer, request_bytes, serving, udp_peer

KEY = b"k" * 32


class SendTo:
    handles_responses = True
    """A processor that sends every request to one destination."""

    def __init__(self, destination: str) -> None:
        self.destination = NetInterface.parse(destination)

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        if isinstance(request.message, Request):
            return MessageResponse(request.message, destination=self.destination)
        return MessageResponse(request.message)


def strictly(main: Coroutine[Any, Any, None]) -> None:
    errors: list[dict[str, Any]] = []

    async def checked() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        await main
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        await asyncio.sleep(0.05)

    uvloop.run(checked(), debug=True)
    assert not errors, [e.get("message") for e in errors]


async def finals(peer: UdpPeer, count: int) -> list[int]:
    statuses: list[int] = []
    while len(statuses) < count:
        response = await peer.response(timeout=5.0)
        if response.status >= 200:
            statuses.append(response.status)
    return statuses


def assert_no_transaction_left(edgeport: EdgePort) -> None:
    assert edgeport.core is not None
    assert edgeport.core.transactions[1] == 0  # no client transaction left
    assert edgeport.core.pending_jobs == 0
    live = [
        c
        for c in edgeport.core._server_txs.values()
        if c.tx.state in (State.TRYING, State.PROCEEDING)
    ]
    assert not live


@pytest.mark.parametrize(
    "destination",
    [
        "udp:sip.local:5060",  # a name that does not resolve (reached sendto before)
        "udp:::1:5060",  # IPv6 while we listen on IPv4 only
        "tcp:127.0.0.1:9",  # a connection refused
    ],
)
def test_unreachable_next_hops_get_503_and_leave_nothing(destination: str) -> None:
    async def scenario() -> None:
        edgeport, port = await serving(SendTo(destination))
        peer = await udp_peer()
        try:
            for n in range(40):
                method = "INVITE" if n % 4 == 0 else "BYE"
                peer.send(
                    request_bytes(method, peer.port, branch=f"z9hG4bKleak{n}", call_id=f"leak{n}"),
                    port,
                )
            assert await finals(peer, 40) == [503] * 40
            assert_no_transaction_left(edgeport)
            stats = edgeport.stats
            assert stats["next_hop_unreachable"] + stats["send_errors"] == 40
        finally:
            peer.close()
            await edgeport.stop()

    strictly(scenario())


def test_an_in_dialog_bye_to_a_host_name_gets_503() -> None:
    """The reported case: a BYE along our own (signed) Record-Route whose Request-URI is
    `sip:1002@sip.local`, a name no DNS knows."""

    async def scenario() -> None:
        connect = ConnectProcessor(
            load_resources(ROOT / "config" / "resources"), MemoryLocation(), Authenticator(KEY)
        )
        edgeport, port = await serving(connect)
        peer = await udp_peer()
        route = f"<sip:127.0.0.1:{port};lr{signed_flows(KEY, 'dialog1')}>"
        try:
            for n in range(30):
                bye = request_bytes(
                    "BYE",
                    peer.port,
                    branch=f"z9hG4bKbye{n}",
                    call_id="dialog1",
                    extra=f"Route: {route}\r\n",
                ).replace(b"To: <sip:1002@sip.local>", b"To: <sip:1002@sip.local>;tag=t2")
                peer.send(bye, port)
            assert await finals(peer, 30) == [503] * 30
            assert_no_transaction_left(edgeport)
        finally:
            peer.close()
            await edgeport.stop()

    strictly(scenario())
