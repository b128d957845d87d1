"""A bad configuration stops a service at start with one line naming file, field and problem."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipgrid.config import ConfigError
from sipgrid.services.connect.index import AccessControlList
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.edgeport.config import load_edgeport
from sipgrid.services.settings import Settings
from sipgrid.sip.uri import MEMO_SIZE

ROOT = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "kind": "EdgePort",
    "apiVersion": "v2beta1",
    "ref": "ep",
    "spec": {"processor": {"addr": "x:1"}, "transport": [{"protocol": "udp", "port": 5060}]},
}


def write(tmp_path: Path, data: object, name: str = "edgeport.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (
            {"transport": [{"protocol": "udp", "port": 99999}]},
            "spec.transport.0.port",
            "less than or equal to 65535",
        ),
        (
            {"transport": [{"protocol": "sctp", "port": 5060}]},
            "spec.transport.0.protocol",
            "Input should be",
        ),
        (
            {
                "transport": [{"protocol": "tls", "port": 5061}],
                "securityContext": {"keyStore": "k.jks", "keyStoreType": "jks"},
            },
            "spec.securityContext.keyStoreType",
            "convert it to PKCS#12",
        ),
        ({"localnets": ["10.0.0.0/33"]}, "spec.localnets", "not an IP network"),
        ({"processor": {}}, "spec.processor.addr", "Field required"),
        ({"colour": "blue"}, "spec.colour", "Extra inputs are not permitted"),
    ],
)
def test_edgeport_errors_name_file_field_and_problem(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    data = {**GOOD, "spec": {**GOOD["spec"], **change}}
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_edgeport(path, Settings.load({}))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and field in message and problem in message


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_edgeport(
        path,
        Settings.load(
            {
                "EXTERNAL_ADDRS": "203.0.113.7, sip.example.com",
                "LOCALNETS": "10.0.0.0/8",
                "PROCESSOR_ADDR": "dispatcher:51901",
            }
        ),
    )
    assert config.spec.external_addrs == ["203.0.113.7", "sip.example.com"]
    assert (
        config.spec.localnets == ["10.0.0.0/8"] and config.spec.processor.addr == "dispatcher:51901"
    )
    with pytest.raises(ConfigError, match=r"environment: field LOCALNETS: .*not an IP network"):
        Settings.load({"LOCALNETS": "nonsense"})


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: EdgePort\nspec: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_edgeport(path, Settings.load({}))


def test_resource_errors_name_file_and_ref(tmp_path: Path) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    agent = {
        "apiVersion": "v2beta1",
        "kind": "Agent",
        "ref": "agent-x",
        "spec": {"username": "9", "domainRef": "nowhere"},
    }
    write(resources, [agent], "agents.yaml")
    with pytest.raises(ConfigError) as info:
        load_resources(resources)
    assert (
        "agents.yaml (agent-x)" in str(info.value)
        and "spec.domainRef" in str(info.value)
        and "nowhere" in str(info.value)
    )
    write(
        resources,
        [{"apiVersion": "v2beta1", "kind": "Gadget", "ref": "g", "spec": {}}],
        "agents.yaml",
    )
    with pytest.raises(ConfigError, match=r"agents.yaml \(g\): field kind"):
        load_resources(resources)
    acl = {
        "apiVersion": "v2beta1",
        "kind": "AccessControlList",
        "ref": "acl",
        "spec": {"accessControlList": {"deny": ["300.1.1.1/8"]}},
    }
    write(resources, [acl], "agents.yaml")
    with pytest.raises(
        ConfigError, match=r"field accessControlList.deny: Value error, not an IP network"
    ):
        load_resources(resources)


def test_an_access_control_list_gives_the_same_answer_the_second_time() -> None:
    """Each list keeps its answer per source address (asked for every request); the
    answers are its rules', kept or not, and what it keeps stays bounded."""
    nets = ipaddress.ip_network
    acl = AccessControlList(
        "acl", "", (nets("10.1.0.0/16"), nets("2001:db8::/32")), (nets("10.0.0.0/8"),)
    )
    cases = {
        "10.1.2.3": (True, True),  # allowed by a rule, though a wider one denies
        "10.9.9.9": (False, False),  # denied
        "192.0.2.1": (False, True),  # no rule: permitted, not explicitly allowed
        "2001:db8::1": (True, True),
        "not an address": (False, False),
    }
    for _ in range(3):
        for address, (explicit, permitted) in cases.items():
            assert (acl.explicitly_allows(address), acl.permits(address)) == (explicit, permitted)
    for n in range(MEMO_SIZE + 10):  # many sources: what is kept empties when full
        assert acl.permits(f"192.0.{n // 256}.{n % 256}")
    assert 0 < len(acl._decided) <= MEMO_SIZE
    assert (acl.explicitly_allows("10.1.2.3"), acl.permits("10.9.9.9")) == (True, False)
    assert acl == AccessControlList(acl.ref, acl.name, acl.allow, acl.deny)


def test_the_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    write(
        tmp_path,
        {**GOOD, "spec": {**GOOD["spec"], "transport": [{"protocol": "udp", "port": 70000}]}},
    )
    done = subprocess.run(
        [sys.executable, "-m", "sipgrid.cli", "run", "--config-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "edgeport.yaml" in lines[0] and "spec.transport.0.port" in lines[0]
