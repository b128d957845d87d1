"""Routr's published Node SDK (@routr/sdk, unchanged) manages a sipgrid APIServer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import ROOT, _start, _wait_ready, free_port

NODE_DIR = ROOT / "tests" / "node"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_routr_node_sdk_creates_lists_updates_deletes(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@routr" / "sdk").exists():
        pytest.fail(
            "Node.js or @routr/sdk is missing: run `make test`, which installs them (make node-deps)",
            pytrace=False,
        )
    external = f"127.0.0.1:{free_port()}"
    env = {
        "SIPGRID_DATA_DIR": str(tmp_path / "data"),
        "EXTERNAL_BIND_ADDR": external,
        "API_USERNAME": "admin",
        "API_PASSWORD": "changeit",
    }
    if database == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    else:
        env["DATABASE_URL"] = ""
    process, log = _start(
        tmp_path,
        "apiserver",
        [
            "serve",
            "apiserver",
            "--config-dir",
            str(tmp_path / "no-config"),
            "--bind-addr",
            f"127.0.0.1:{free_port()}",
        ],
        env,
    )
    try:
        _wait_ready(process, log, "sipgrid: ready")
        done = subprocess.run(
            [node, "sdk_check.js", external, "admin", "changeit"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "ALLOW_INSECURE": "true"},
            check=False,
        )
        assert done.returncode == 0, done.stderr + log.read_text()
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert (
            result["domainUri"] == "node.sip.local"
            and result["updatedDomainName"] == "Node Domain 2"
        )
        assert result["domainRef"] in result["listedDomains"]
        assert (
            result["agentDomainUri"] == "node.sip.local" and result["gotAgentName"] == "Node Agent"
        )
        assert (
            result["updatedAgentName"] == "Node Agent 2"
            and result["agentRef"] in result["listedAgents"]
        )
        assert (
            result["deleteReferencedDomain"] == "9"
        )  # FAILED_PRECONDITION: an agent still uses it
        assert result["domainsAfter"] == 0 and result["getDeletedAgent"] == "5"  # NOT_FOUND
        bad = subprocess.run(
            [
                node,
                "-e",
                f"""
            const SDK = require("@routr/sdk").default;
            new SDK.Domains({{endpoint: "{external}", insecure: true, username: "admin", password: "wrong"}})
              .listDomains({{pageSize: 1, pageToken: ""}}).then(() => console.log("accepted"), e => console.log(e.code));
        """,
            ],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert bad.stdout.strip() == "16", bad.stdout + bad.stderr  # UNAUTHENTICATED
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)
