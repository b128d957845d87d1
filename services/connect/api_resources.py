"""The Connect processor's resources read from the APIServer's internal port (the
distributed wiring): a snapshot reloaded every half second, in a thread."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from sipgrid.sdk import ConnectClient, SdkError

from .resources import AccessControlList, Agent, Credentials, Domain, Resources

log = logging.getLogger("sipgrid.connect")

REFRESH_INTERVAL = 0.5


def snapshot(client: ConnectClient) -> Resources:
    out = Resources()
    acls = {
        a.ref: AccessControlList(
            a.ref,
            a.name,
            tuple(ipaddress.ip_network(n, strict=False) for n in a.allow),
            tuple(ipaddress.ip_network(n, strict=False) for n in a.deny),
        )
        for a in client.acls.list(1000)
    }
    credentials = {
        c.ref: Credentials(c.ref, c.username, c.password) for c in client.credentials.list(1000)
    }
    domains = {}
    for d in client.domains.list(1000):
        domain = Domain(
            d.ref,
            d.name,
            d.domain_uri,
            acls.get(d.access_control_list.ref) if d.HasField("access_control_list") else None,
        )
        domains[d.ref] = domain
        out.domains[domain.domain_uri.lower()] = domain
    for a in client.agents.list(1000):
        home = domains.get(a.domain.ref)
        if home is None:
            continue
        secret = credentials.get(a.credentials.ref) if a.HasField("credentials") else None
        privacy = "PRIVATE" if a.privacy == 0 else "NONE"
        agent = Agent(
            a.ref, a.name, a.username, home, secret, privacy, a.enabled, a.max_contacts, a.expires
        )
        out.agents[(home.domain_uri.lower(), agent.username)] = agent
    out.by_ref = {**acls, **credentials, **domains}
    return out


class ApiResources:
    """Callable returning the current snapshot; ``run()`` keeps it fresh."""

    def __init__(self, internal_addr: str) -> None:
        self._client = ConnectClient(internal_addr)
        self._snapshot = Resources()

    def __call__(self) -> Resources:
        return self._snapshot

    async def refresh(self) -> None:
        self._snapshot = await asyncio.to_thread(snapshot, self._client)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except SdkError as error:
                log.warning("cannot read the resources from the APIServer: %s", error)
            await asyncio.sleep(REFRESH_INTERVAL)
