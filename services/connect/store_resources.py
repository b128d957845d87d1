"""The Connect processor's view of the resources, read from the APIServer's store.

A snapshot (services.connect.resources.Resources) answers every SIP message without a
database round trip; a refresher reloads it when the store's write counter moves,
checked twice a second, so an API change reaches new calls within a second.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from services.apiserver.store import ResourceStore, StoreError

from .resources import AccessControlList, Agent, Credentials, Domain, Resources

log = logging.getLogger("sipgrid.connect")

REFRESH_INTERVAL = 0.5


def snapshot(store: ResourceStore) -> Resources:
    out = Resources()
    acls = {
        a["ref"]: AccessControlList(
            a["ref"],
            a["name"],
            tuple(ipaddress.ip_network(n, strict=False) for n in a.get("allow", [])),
            tuple(ipaddress.ip_network(n, strict=False) for n in a.get("deny", [])),
        )
        for a in _all(store, "AccessControlList")
    }
    credentials = {
        c["ref"]: Credentials(c["ref"], c["username"], store.password(c["ref"]))
        for c in _all(store, "Credentials")
    }
    domains = {}
    for d in _all(store, "Domain"):
        domain = Domain(
            d["ref"], d["name"], d["domain_uri"], acls.get(d.get("access_control_list_ref") or "")
        )
        domains[d["ref"]] = domain
        out.domains[domain.domain_uri.lower()] = domain
    for a in _all(store, "Agent"):
        home = domains.get(a["domain_ref"])
        if home is None:
            continue
        agent = Agent(
            a["ref"],
            a["name"],
            a["username"],
            home,
            credentials.get(a.get("credentials_ref") or ""),
            a.get("privacy", "NONE"),
            bool(a.get("enabled", True)),
            int(a.get("max_contacts", 0)),
            int(a.get("expires", 0)),
        )
        out.agents[(home.domain_uri.lower(), agent.username)] = agent
    out.by_ref = {**acls, **credentials, **domains}
    return out


def _all(store: ResourceStore, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page, token = store.list_page(kind, 1000, token)
        items += page
        if not token:
            return items


class StoreResources:
    """Callable that returns the current snapshot; ``run()`` keeps it fresh."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store
        self._revision = store.revision()
        self._snapshot = snapshot(store)

    def __call__(self) -> Resources:
        return self._snapshot

    async def refresh(self) -> bool:
        """Reload when the store changed; True when it did."""
        revision = await asyncio.to_thread(self._store.revision)
        if revision == self._revision:
            return False
        self._snapshot = await asyncio.to_thread(snapshot, self._store)
        self._revision = revision
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreError as error:
                log.warning("cannot refresh the resources: %s", error)
            await asyncio.sleep(REFRESH_INTERVAL)
