"""A domain whose access control list denies loopback refuses its agents with 403."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import scenarios
from .harness import all_in_one, distributed, run_sipp

DENY_LOOPBACK: list[dict[str, object]] = [
    {
        "apiVersion": "v2beta1",
        "kind": "AccessControlList",
        "ref": "acl-no-loopback",
        "metadata": {"name": "No loopback"},
        "spec": {"accessControlList": {"deny": ["127.0.0.0/8"], "allow": ["10.0.0.0/8"]}},
    },
    {
        "apiVersion": "v2beta1",
        "kind": "Domain",
        "ref": "domain-closed",
        "metadata": {"name": "Closed"},
        "spec": {
            "accessControlListRef": "acl-no-loopback",
            "context": {"domainUri": "closed.local"},
        },
    },
    {
        "apiVersion": "v2beta1",
        "kind": "Credentials",
        "ref": "credentials-2001",
        "metadata": {"name": "2001"},
        "spec": {"credentials": {"username": "2001", "password": "2001-secret"}},
    },
    {
        "apiVersion": "v2beta1",
        "kind": "Agent",
        "ref": "agent-2001",
        "metadata": {"name": "Carol"},
        "spec": {
            "username": "2001",
            "domainRef": "domain-closed",
            "credentialsRef": "credentials-2001",
        },
    },
]


@pytest.mark.parametrize("wiring", ["one", "distributed"])
def test_acl_denial(tmp_path: Path, wiring: str) -> None:
    start = all_in_one if wiring == "one" else distributed
    with start(tmp_path / "sipgrid", extra_resources=DENY_LOOPBACK) as sipgrid:
        keys = {"domain": "closed.local", "callee": "2001"}
        result = run_sipp(
            tmp_path,
            "register",
            scenarios.register_unauthenticated(403),
            server_port=sipgrid.port,
            user="2001",
            password="2001-secret",
            keys=keys,
        )
        assert result.ok, result.output + sipgrid.log_text()
        result = run_sipp(
            tmp_path,
            "invite",
            scenarios.call_rejected(403, challenged=False),
            server_port=sipgrid.port,
            user="2001",
            password="2001-secret",
            keys=keys,
        )
        assert result.ok, result.output + sipgrid.log_text()
