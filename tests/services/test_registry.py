"""The Registry's decisions in memory: a provider played by a function, a fake clock."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import yaml

from sipgrid.api.types import NetInterface, Transport
from sipgrid.services.connect.index import Resources
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.registry.registry import Registry
from sipgrid.sip import Request, Response, make_response
from sipgrid.sip.digest import verify

from .helpers import ROOT

US = NetInterface("127.0.0.1", 5060, Transport.UDP)


def resources_with(tmp_path: Path, send_register: bool = True) -> Resources:
    """The example resources with trunk-local registering (and a third URI)."""
    items = [
        item
        for name in ("sip-local.yaml", "pstn.yaml")
        for item in yaml.safe_load((ROOT / "config" / "resources" / name).read_text())
    ]
    for item in items:
        if item["ref"] == "trunk-local":
            item["spec"]["outbound"]["sendRegister"] = send_register
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(items))
    return load_resources(tmp_path)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """Answers REGISTERs: a 401 first, then 200 with expires=60 (or ``script``)."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.seen: list[tuple[Request, NetInterface]] = []

    async def __call__(self, request: Request, where: NetInterface) -> Response | None:
        self.seen.append((request, where))
        if self.script:
            status = self.script.pop(0)
            return None if status == 0 else make_response(request, status, to_tag="p")
        if "Authorization" not in request:
            challenged = make_response(request, 401, to_tag="p")
            challenged.add("WWW-Authenticate", 'Digest realm="provider", nonce="n1", qop="auth"')
            return challenged
        (creds,) = request.authorizations
        assert creds.username == "sipgrid" and verify(creds, "REGISTER", password="provider-secret")
        ok = make_response(request, 200, to_tag="p")
        contact = request.get("Contact") or ""
        ok.add("Contact", f"{contact};expires=60")
        return ok


def registry(resources: Resources, provider: Provider, clock: Clock) -> Registry:
    return Registry(lambda: resources, provider, lambda t: US, clock=clock, rng=random.Random(7))


async def settle(reg: Registry) -> None:
    await reg.tick()
    for _ in range(20):
        await asyncio.sleep(0)
        if not any(s.in_flight for s in reg.status.values()):
            return


def test_a_trunk_registers_answers_the_challenge_and_refreshes_before_expiry(
    tmp_path: Path,
) -> None:
    provider, clock = Provider(), Clock()
    reg = registry(resources_with(tmp_path), provider, clock)

    async def scenario() -> list[dict[str, Any]]:
        await settle(reg)
        first = reg.report()
        clock.now += 47  # 0.8 of the 60 s granted: not yet
        await settle(reg)
        assert len(provider.seen) == 2
        clock.now += 1.5
        await settle(reg)
        return first

    first = asyncio.run(scenario())
    assert first[0]["state"] == "registered" and first[0]["expires_in"] == 60
    requests = [r for r, _ in provider.seen]
    assert len(requests) == 4  # REGISTER, 401, REGISTER with credentials; then the refresh
    assert {r.call_id for r in requests} == {requests[0].call_id}
    assert [r.cseq.seq for r in requests] == [1, 2, 3, 4]
    assert requests[0].get("Contact") == "<sip:sg-trunk-trunk-local@127.0.0.1:5060>"
    assert provider.seen[0][1] == NetInterface("127.0.0.1", 5080, Transport.UDP)


def test_failures_back_off_and_move_to_the_next_uri(tmp_path: Path) -> None:
    provider, clock = Provider(script=[503, 0, 403]), Clock()
    reg = registry(resources_with(tmp_path), provider, clock)
    delays = []

    async def scenario() -> None:
        for _ in range(3):
            await settle(reg)
            status = reg.status["trunk-local"]
            delays.append(status.next_attempt - clock.now)
            clock.now = status.next_attempt
        await settle(reg)  # the provider answers now (401, then 200)

    asyncio.run(scenario())
    for delay, base in zip(delays, (5, 10, 20), strict=True):  # doubling, 20 % jitter
        assert 0.8 * base <= delay <= 1.2 * base, delays
    ports = [where.port for _, where in provider.seen]
    assert ports[:3] == [5080, 5081, 5080]  # each failure moves to the other URI
    assert reg.report()[0]["state"] == "registered"
    assert reg.report()[0]["failures"] == 0


def test_a_trunk_that_stops_registering_is_unregistered(tmp_path: Path) -> None:
    provider, clock = Provider(), Clock()
    current = {"resources": resources_with(tmp_path / "on")}
    reg = Registry(
        lambda: current["resources"], provider, lambda t: US, clock=clock, rng=random.Random(1)
    )

    async def scenario() -> None:
        await settle(reg)
        current["resources"] = resources_with(tmp_path / "off", send_register=False)
        await settle(reg)

    asyncio.run(scenario())
    last, _ = provider.seen[-1]
    assert last.get("Expires") == "0"
    assert reg.report()[0]["state"] == "unregistered"


def test_an_unanswerable_challenge_is_a_failure(tmp_path: Path) -> None:
    class AkaOnly(Provider):
        async def __call__(self, request: Request, where: NetInterface) -> Response | None:
            self.seen.append((request, where))
            challenged = make_response(request, 401, to_tag="p")
            challenged.add("WWW-Authenticate", 'Digest realm="p", nonce="n", algorithm=AKAv1-MD5')
            return challenged

    provider, clock = AkaOnly(), Clock()
    reg = registry(resources_with(tmp_path), provider, clock)
    asyncio.run(settle(reg))
    status = reg.report()[0]
    assert (
        status["state"] == "backing off" and status["last_reason"] == "cannot answer the challenge"
    )


def test_a_leases_life_follows_the_expiry_the_provider_granted() -> None:
    """A standby instance must take a dead holder's trunk over before the binding runs
    out: the lease lasts 0.15 of the grant (Kamailio's 10 s: 2.5 s), at most 10 s."""
    from sipgrid.services.registry.registry import lease_ttl

    assert lease_ttl(0) == 10.0  # nothing granted yet
    assert lease_ttl(10) == 2.5 and lease_ttl(3600) == 10.0 and lease_ttl(40) == 6.0
    for granted in (10, 30, 60, 120, 3600):
        # the holder dies right after registering: a standby holds the trunk once the
        # lease is out and a tick has passed, and registers before the binding runs out
        assert lease_ttl(granted) + 1.0 < granted
