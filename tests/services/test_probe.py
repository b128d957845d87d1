"""Static peers' OPTIONS probes: the prober's counting in memory, and the EdgePort
sending a request of its own over a real socket."""

from __future__ import annotations

import asyncio

from sipgrid.api.types import NetInterface, Transport
from sipgrid.services.connect.probe import PeerProber, options_probe
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.sip import Request, Response, make_response, parse

from .helpers import ROOT, connect_processor, edgeport_config, udp_peer
from .test_connect import ALICE, Switch
from .test_pstn import agent_calls

CONFERENCE = NetInterface("127.0.0.1", 5090, Transport.UDP)  # pstn.yaml's static peer


class Answering:
    """A stand-in for the EdgePort's request(): answers while ``up``, records probes."""

    def __init__(self) -> None:
        self.up = False
        self.probes: list[tuple[Request, NetInterface]] = []

    async def __call__(self, request: Request, where: NetInterface) -> Response | None:
        self.probes.append((request, where))
        return make_response(request, 200) if self.up else None


def test_three_unanswered_probes_take_a_static_peer_out_and_one_answer_brings_it_back() -> None:
    resources = load_resources(ROOT / "config" / "resources")
    send = Answering()
    prober = PeerProber(lambda: resources, send, interval=1.0)
    conference = resources.peer("conference")
    assert conference is not None
    for _ in range(2):
        asyncio.run(prober.probe_all())
    assert prober.available(conference)  # two misses are not enough
    asyncio.run(prober.probe_all())
    assert not prober.available(conference)
    request, where = send.probes[-1]
    assert request.method == "OPTIONS" and where == CONFERENCE
    assert {w for _, w in send.probes} == {CONFERENCE}  # "voice" registers: never probed
    send.up = True
    asyncio.run(prober.probe_all())
    assert prober.available(conference)


def test_a_call_to_a_static_peer_that_is_down_gets_480() -> None:
    switch = Switch()
    resources = load_resources(ROOT / "config" / "resources")
    switch.processor.prober = prober = PeerProber(lambda: resources, Answering(), interval=1.0)
    for _ in range(3):
        asyncio.run(prober.probe_all())
    down = switch.answer(agent_calls(switch, "sip:conference@sip.local"), ALICE)
    assert (down.status, down.reason) == (480, "Temporarily Unavailable (Peer Down)")


def test_the_edgeport_sends_a_request_of_its_own_and_returns_the_answer() -> None:
    async def scenario() -> None:
        edgeport = EdgePort(edgeport_config(0), connect_processor())
        await edgeport.start()
        peer = await udp_peer()
        try:
            resources = load_resources(ROOT / "config" / "resources")
            conference = resources.peer("conference")
            assert conference is not None
            where = NetInterface("127.0.0.1", peer.port, Transport.UDP)
            asking = asyncio.create_task(edgeport.request(options_probe(conference, where), where))
            probe = parse(await peer.recv())
            assert isinstance(probe, Request) and probe.method == "OPTIONS"
            assert (probe.top_via.branch or "").startswith("z9hG4bKsg")  # our own branch
            peer.send(make_response(probe, 200).serialize(), edgeport.listening_points[0].port)
            answer = await asyncio.wait_for(asking, 2)
            assert answer is not None and answer.status == 200
            # no listening point for IPv6 here: no answer at once, not after Timer F
            nowhere = NetInterface("::1", 5060, Transport.UDP)
            assert (
                await asyncio.wait_for(
                    edgeport.request(options_probe(conference, nowhere), nowhere), 1
                )
                is None
            )
        finally:
            peer.close()
            await edgeport.stop()

    asyncio.run(scenario())
