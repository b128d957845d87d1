"""One set of resource defaults: a resource file that leaves fields out reads the same in
every reader (Connect's files, the store, the APIServer's internal port), and the same
as the store's column defaults; a field the API set to its protobuf zero stays set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from sipgrid.services.apiserver.files import apply
from sipgrid.services.apiserver.server import start_apiserver
from sipgrid.services.apiserver.store import column_defaults
from sipgrid.services.connect.api_resources import ApiResources
from sipgrid.services.connect.index import Resources
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.connect.store_resources import snapshot

SPARSE = [
    {"kind": "Domain", "ref": "d", "spec": {"context": {"domainUri": "sip.local"}}},
    {"kind": "Credentials", "ref": "c", "spec": {"credentials": {"username": "u", "password": "p"}}},
    {"kind": "Agent", "ref": "a", "spec": {"username": "1001", "domainRef": "d", "credentialsRef": "c"}},
    {"kind": "Peer", "ref": "p", "spec": {"username": "voice", "aor": "sip:voice@media"}},
    {"kind": "Agent", "ref": "off", "spec": {"username": "1002", "domainRef": "d", "enabled": False, "privacy": "Private"}},
]  # fmt: skip


def view(resources: Resources) -> list[tuple[object, ...]]:
    agents = sorted(resources.agents.values(), key=lambda a: a.ref)
    peer = resources.peer("voice")
    assert peer is not None
    return [
        *((a.ref, a.privacy, a.enabled, a.max_contacts, a.expires) for a in agents),
        (peer.balancing_algorithm, peer.with_session_affinity, peer.enabled, peer.expires),
    ]


def test_left_out_fields_read_alike_everywhere(tmp_path: Path) -> None:
    files = tmp_path / "resources"
    files.mkdir()
    (files / "all.yaml").write_text(
        yaml.safe_dump([{"apiVersion": "v2beta1", **r} for r in SPARSE])
    )
    agent, peer = column_defaults("Agent"), column_defaults("Peer")
    expected = [
        ("a", agent["privacy"], agent["enabled"], agent["max_contacts"], agent["expires"]),
        ("off", "PRIVATE", False, 0, 0),
        (peer["balancing_algorithm"], False, peer["enabled"], peer["expires"]),
    ]
    assert expected[0] == ("a", "NONE", True, 0, 0)  # the store's column defaults
    assert view(load_resources(files)) == expected

    async def scenario() -> None:
        api = await start_apiserver(
            data_dir=tmp_path / "data", internal_addr="127.0.0.1:0", external_addr="127.0.0.1:0"
        )
        try:
            await asyncio.to_thread(apply, api.store, files)
            assert view(snapshot(api.store)) == expected
            remote = ApiResources(f"127.0.0.1:{api.ports[0]}")
            await remote.refresh()
            assert view(remote()) == expected  # "off" keeps enabled false and PRIVATE
        finally:
            await api.stop()

    asyncio.run(scenario())
