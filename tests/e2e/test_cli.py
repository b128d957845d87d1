"""The sipgrid command end to end against a running all-in-one: login, resources, apply,
registrations, and errors in one line with a non-zero exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import scenarios
from .harness import ROOT, all_in_one, run_sipp


def test_cli_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config-home")}
    for name in ("SIPGRID_ENDPOINT", "SIPGRID_API_KEY", "SIPGRID_API_USER", "SIPGRID_API_PASSWORD"):
        env.pop(name, None)

    def sipgrid(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "sipgrid.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=False,
        )
        if ok:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    with all_in_one(tmp_path / "sipgrid") as server:
        where = re.search(r"first API key is in (\S+) \(readable by you only", server.log_text())
        assert where is not None, server.log_text()
        key_file = Path(where.group(1))
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.parent.stat().st_mode & 0o077 == 0  # the data directory: owner only
        assert (key_file.parent / "sipgrid.db").stat().st_mode & 0o077 == 0
        assert "sg_" not in server.log_text()  # the key itself never reaches the log
        key = re.match(r"(sg_\S+)", key_file.read_text())
        assert key is not None
        endpoint = f"127.0.0.1:{server.external_api_port}"

        refused = sipgrid("domains", "list", "--endpoint", endpoint, ok=False)
        assert (
            refused.returncode == 1
            and "UNAUTHENTICATED" in refused.stderr
            and len(refused.stderr.strip().splitlines()) == 1
        )

        assert (
            "logged in"
            in sipgrid("login", "--endpoint", endpoint, "--api-key", key.group(1)).stdout
        )
        domains = json.loads(sipgrid("domains", "list", "-o", "json").stdout)
        domain = domains if isinstance(domains, dict) else domains[0]
        assert domain["domain_uri"] == "sip.local"

        secret = json.loads(
            sipgrid(
                "credentials",
                "create",
                "--name",
                "Carol",
                "--username",
                "2003",
                "--password",
                "cli-secret",
                "-o",
                "json",
            ).stdout
        )
        assert "password" not in secret
        agent = json.loads(
            sipgrid(
                "agents",
                "create",
                "--name",
                "Carol",
                "--username",
                "2003",
                "--domain-ref",
                domain["ref"],
                "--credentials-ref",
                secret["ref"],
                "--enabled",
                "--privacy",
                "none",
                "-o",
                "json",
            ).stdout
        )
        assert agent["domain"]["domain_uri"] == "sip.local" and agent["enabled"] is True
        table = sipgrid("agents", "list").stdout
        assert "2003" in table and "USERNAME" in table
        updated = yaml.safe_load(
            sipgrid(
                "agents", "update", agent["ref"], "--name", "Carol C.", "--enabled", "-o", "yaml"
            ).stdout
        )
        assert updated["name"] == "Carol C."

        missing = sipgrid("agents", "get", "no-such-ref", ok=False)
        assert (
            missing.returncode == 1
            and "NOT_FOUND" in missing.stderr
            and len(missing.stderr.strip().splitlines()) == 1
        )
        bad = sipgrid(
            "agents",
            "create",
            "--name",
            "X",
            "--username",
            "2004",
            "--domain-ref",
            "nowhere",
            ok=False,
        )
        assert (
            bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "domain_ref" in bad.stderr
        )

        resources = tmp_path / "more.yaml"
        resources.write_text(
            yaml.safe_dump(
                [
                    {
                        "apiVersion": "v2beta1",
                        "kind": "Credentials",
                        "ref": "credentials-2005",
                        "metadata": {"name": "Dave"},
                        "spec": {"credentials": {"username": "2005", "password": "dave"}},
                    },
                    {
                        "apiVersion": "v2beta1",
                        "kind": "Agent",
                        "ref": "agent-2005",
                        "metadata": {"name": "Dave"},
                        "spec": {
                            "username": "2005",
                            "domainRef": domain["ref"],
                            "credentialsRef": "credentials-2005",
                        },
                    },
                ]
            )
        )
        first = sipgrid("apply", "-f", str(resources)).stdout
        assert (
            "Agent agent-2005 created" in first and "Credentials credentials-2005 created" in first
        )
        again = sipgrid("apply", "-f", str(resources)).stdout
        assert "Agent agent-2005 updated" in again
        assert (
            json.loads(sipgrid("agents", "get", "agent-2005", "-o", "json").stdout)["username"]
            == "2005"
        )

        registered = run_sipp(
            tmp_path,
            "register",
            scenarios.register(200),
            server_port=server.port,
            user="1001",
            keys={"contact_port": "7300"},
        )
        assert registered.ok, registered.output
        bindings = json.loads(
            sipgrid(
                "registrations",
                "list",
                "--location-addr",
                f"127.0.0.1:{server.location_port}",
                "-o",
                "json",
            ).stdout
        )
        assert [(b["aor"], b["contact"]) for b in bindings] == [
            ("sip:1001@sip.local", "sip:1001@127.0.0.1:7300;transport=UDP")
        ]
        time.sleep(1.2)  # the seconds left count down; the granted expiry stays
        later = json.loads(
            sipgrid(
                "registrations",
                "list",
                "--location-addr",
                f"127.0.0.1:{server.location_port}",
                "-o",
                "json",
            ).stdout
        )
        assert later[0]["expires"] == bindings[0]["expires"]
        assert later[0]["expires_in"] <= bindings[0]["expires_in"] - 1
        assert (
            "sip:1001@sip.local"
            in sipgrid(
                "registrations", "list", "--location-addr", f"127.0.0.1:{server.location_port}"
            ).stdout
        )

        assert "deleted" in sipgrid("agents", "delete", agent["ref"]).stdout

        # keys and users, managed where the server runs (its SQLite database here)
        env["SIPGRID_DATA_DIR"] = str(server.config_dir / "data")
        env["DATABASE_URL"] = ""
        new_key = sipgrid("apikeys", "create", "--name", "ci").stdout.strip()
        assert new_key.startswith("sg_")
        sipgrid("domains", "list", "--api-key", new_key)
        assert "revoked" in sipgrid("apikeys", "revoke", new_key).stdout
        time.sleep(1.1)
        assert sipgrid("domains", "list", "--api-key", new_key, ok=False).returncode == 1
        sipgrid("apiusers", "set", "ops", "--password", "ops-secret")
        assert (
            "Domain"
            not in sipgrid(
                "domains", "list", "--api-user", "ops", "--api-password", "ops-secret"
            ).stderr
        )
        assert (
            sipgrid(
                "domains", "list", "--api-user", "ops", "--api-password", "wrong", ok=False
            ).returncode
            == 1
        )


def test_check_finds_every_bad_file_in_one_line_each(tmp_path: Path) -> None:
    def check(directory: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sipgrid.cli", "check", "--config-dir", str(directory)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=60,
            check=False,
        )

    for good in (ROOT / "config", ROOT / "deploy" / "config"):
        done = check(good)
        assert done.returncode == 0 and "ok: resources/" in done.stdout, done.stderr
    bad = tmp_path / "bad"
    (bad / "resources").mkdir(parents=True)
    edgeport = yaml.safe_load((ROOT / "config" / "edgeport.yaml").read_text())
    edgeport["spec"]["transport"][0]["port"] = "seventy"
    (bad / "edgeport.yaml").write_text(yaml.safe_dump(edgeport))
    agent = {"apiVersion": "v2beta1", "kind": "Agent", "ref": "a1", "metadata": {"name": "x"}}
    agent["spec"] = {"username": "", "domainRef": "nowhere"}
    (bad / "resources" / "a.yaml").write_text(yaml.safe_dump([agent]))
    done = check(bad, SIPGRID_DRAIN_SECONDS="-3")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0] == (
        "sipgrid: environment: field SIPGRID_DRAIN_SECONDS: "
        "Input should be greater than or equal to 0 (it is '-3')"
    )
    assert "edgeport.yaml: field spec.transport.0.port" in lines[1]
    assert "a.yaml (a1): field username" in lines[2]
