"""Routr-format resource files (YAML or JSON lists of {apiVersion, kind, ref, metadata,
spec}) applied to the store by ref at start, without undoing what the API changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sipgrid.config import ConfigError, read_document

from .store import InvalidArgument, NotFound, ResourceStore, StoreError, column_defaults

# Apply in this order, so that what a resource refers to exists first.
ORDER = ["AccessControlList", "Credentials", "Trunk", "Number", "Domain", "Agent", "Peer"]


def _get(spec: dict[str, Any], *path: str, default: Any = None) -> Any:
    value: Any = spec
    for key in path:
        if not isinstance(value, dict):
            return default
        value = value.get(key)
    return default if value is None else value


def to_store(kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    """One Routr resource as the store's fields."""
    spec = resource.get("spec") or {}
    defaults = column_defaults(kind) if kind in ORDER else {}
    data: dict[str, Any] = {
        "name": _get(resource, "metadata", "name", default=resource.get("ref", ""))
    }
    if resource.get("extended") or spec.get("extended"):
        data["extended"] = resource.get("extended") or spec.get("extended")
    if kind == "AccessControlList":
        data |= {
            "allow": _get(spec, "accessControlList", "allow", default=[]),
            "deny": _get(spec, "accessControlList", "deny", default=[]),
        }
    elif kind == "Credentials":
        data |= {
            "username": _get(spec, "credentials", "username", default=""),
            "password": _get(spec, "credentials", "password", default=""),
        }
    elif kind == "Domain":
        policies = [
            {"rule": p.get("rule", ""), "number_ref": p.get("numberRef", "")}
            for p in _get(spec, "context", "egressPolicies", default=[])
        ]
        data |= {
            "domain_uri": _get(spec, "context", "domainUri", default=""),
            "access_control_list_ref": spec.get("accessControlListRef"),
            "egress_policies": policies,
        }
    elif kind == "Agent":
        data |= {
            "username": str(spec.get("username", "")),
            "domain_ref": spec.get("domainRef"),
            "credentials_ref": spec.get("credentialsRef"),
            "privacy": str(spec.get("privacy", defaults["privacy"])).upper(),
            "enabled": bool(spec.get("enabled", defaults["enabled"])),
            "max_contacts": int(spec.get("maxContacts") or defaults["max_contacts"]),
            "expires": int(spec.get("expires") or defaults["expires"]),
        }
    elif kind == "Peer":
        algorithm = (
            str(_get(spec, "loadBalancing", "algorithm", default="")).upper().replace("-", "_")
        )
        data |= {
            "username": str(spec.get("username", "")),
            "aor": spec.get("aor", ""),
            "contact_addr": spec.get("contactAddr", ""),
            "credentials_ref": spec.get("credentialsRef"),
            "access_control_list_ref": spec.get("accessControlListRef"),
            "balancing_algorithm": algorithm or defaults["balancing_algorithm"],
            "with_session_affinity": bool(
                _get(
                    spec,
                    "loadBalancing",
                    "withSessionAffinity",
                    default=defaults["with_session_affinity"],
                )
            ),
            "enabled": bool(spec.get("enabled", defaults["enabled"])),
            "max_contacts": int(spec.get("maxContacts") or defaults["max_contacts"]),
            "expires": int(spec.get("expires") or defaults["expires"]),
        }
    elif kind == "Number":
        data |= {
            "trunk_ref": spec.get("trunkRef"),
            "tel_url": _get(spec, "location", "telUrl", default=""),
            "aor_link": _get(spec, "location", "aorLink", default=""),
            "session_affinity_header": _get(spec, "location", "sessionAffinityHeader", default=""),
            "extra_headers": _get(spec, "location", "extraHeaders", default=[]),
            "city": _get(spec, "geoInfo", "city", default=""),
            "country": _get(spec, "geoInfo", "country", default=""),
            "country_iso_code": _get(spec, "geoInfo", "countryIsoCode", default=""),
        }
    elif kind == "Trunk":
        uris = [
            {
                "host": _get(u, "uri", "host", default=""),
                "port": int(_get(u, "uri", "port", default=0)),
                "transport": str(_get(u, "uri", "transport", default="")).lower(),
                "user": _get(u, "uri", "user", default=""),
                "weight": int(u.get("weight", 0)),
                "priority": int(u.get("priority", 0)),
                "enabled": bool(u.get("enabled", True)),
            }
            for u in _get(spec, "outbound", "uris", default=[])
        ]
        data |= {
            "inbound_uri": _get(spec, "inbound", "uri", default=""),
            "access_control_list_ref": _get(spec, "inbound", "accessControlListRef"),
            "inbound_credentials_ref": _get(spec, "inbound", "credentialsRef"),
            "outbound_credentials_ref": _get(spec, "outbound", "credentialsRef"),
            "send_register": bool(_get(spec, "outbound", "sendRegister", default=False)),
            "uris": uris,
        }
    else:
        raise InvalidArgument("kind", f"unknown kind {kind!r}")
    return data


def read_resources(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, resource) pairs from a file or every .yaml/.yml/.json file of a directory."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        if path.is_dir()
        else [path]
    )
    out: list[tuple[str, dict[str, Any]]] = []
    for file in files:
        document = read_document(file)
        items = document if isinstance(document, list) else [document] if document else []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or item.get("kind") not in ORDER or not item.get("ref"):
                where = f"{file} (#{index})"
                raise ConfigError(
                    f"{where}: field kind/ref: each resource needs a ref and a kind of {', '.join(ORDER)}"
                )
            out.append((f"{file} ({item['ref']})", item))
    return out


def apply(store: ResourceStore, path: Path) -> list[tuple[str, str, str]]:
    """Apply resource files at start; return (kind, ref, outcome) for each resource.

    A file never undoes the API: a ref it has not created before is created ("created"),
    or left alone when the API made it ("kept"); a ref it created is updated when the file
    changed and the API has not changed the resource since ("updated"), else left alone
    ("unchanged" when the file did not change, "kept" when the API did). Delete a ref
    through the API to have a file create it again.
    """
    resources = read_resources(path)
    resources.sort(key=lambda pair: ORDER.index(pair[1]["kind"]))
    done: list[tuple[str, str, str]] = []
    for where, resource in resources:
        kind, ref = resource["kind"], resource["ref"]
        data = to_store(kind, resource)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        try:
            outcome = _apply_one(store, kind, ref, data, digest)
        except StoreError as error:
            raise ConfigError(f"{where}: {error}") from None
        if outcome == "kept":
            print(
                f"sipgrid: {where}: made or changed through the API; the API's version stays",
                flush=True,
            )
        done.append((kind, ref, outcome))
    return done


def _apply_one(store: ResourceStore, kind: str, ref: str, data: dict[str, Any], digest: str) -> str:
    last = store.applied(kind, ref)
    try:
        store.get(kind, ref)
    except NotFound:
        store.create(kind, data, ref=ref)
        store.mark_applied(kind, ref, digest, store.state_hash(kind, ref))
        return "created"
    if last is None:
        return "kept"  # made through the API (or by a sipgrid before files were tracked)
    file_hash, state_hash = last
    if store.state_hash(kind, ref) != state_hash:
        return "kept"  # the API changed it since
    if file_hash == digest:
        return "unchanged"
    store.update(kind, ref, data)
    store.mark_applied(kind, ref, digest, store.state_hash(kind, ref))
    return "updated"
