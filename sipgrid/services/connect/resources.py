"""Connect resources from files in Routr's format.

A resources directory holds YAML or JSON files, each a list of
``{apiVersion, kind, ref, metadata, spec}``. Refs are resolved at load; an error names
the file, the ref and the field.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipgrid.config import ConfigError, check_networks, read_document, validate

from .index import (
    AccessControlList,
    Agent,
    Credentials,
    Domain,
    EgressPolicy,
    Number,
    Peer,
    Resources,
    Trunk,
    TrunkUri,
    aor_key,
)

log = logging.getLogger("sipgrid.connect")


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class _Meta(_Model):
    name: str = ""


class _CredentialsPair(_Model):
    username: str
    password: str


class _CredentialsSpec(_Model):
    credentials: _CredentialsPair


class _AclLists(_Model):
    allow: list[str] = []
    deny: list[str] = []

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


class _AclSpec(_Model):
    access_control_list: _AclLists = Field(alias="accessControlList")


class _DomainContext(_Model):
    domain_uri: str = Field(alias="domainUri", min_length=1)


class _DomainSpec(_Model):
    context: _DomainContext
    access_control_list_ref: str | None = Field(None, alias="accessControlListRef")


class _AgentSpec(_Model):
    username: str = Field(min_length=1)
    domain_ref: str = Field(alias="domainRef")
    credentials_ref: str | None = Field(None, alias="credentialsRef")
    # absent: the store's default (services.apiserver.store.column_defaults)
    privacy: str | None = None
    enabled: bool | None = None
    max_contacts: int | None = Field(None, alias="maxContacts", ge=0)
    expires: int | None = Field(None, ge=0)


# The file-format checks that come before the store's own (their messages name the
# fields as a resource file spells them).
_SPECS: dict[str, type[_Model]] = {
    "AccessControlList": _AclSpec,
    "Credentials": _CredentialsSpec,
    "Domain": _DomainSpec,
    "Agent": _AgentSpec,
}


class _Resource(_Model):
    api_version: str = Field("v2beta1", alias="apiVersion")
    kind: Literal["Domain", "Agent", "Credentials", "AccessControlList", "Peer", "Number", "Trunk"]
    ref: str = Field(min_length=1)
    metadata: _Meta = _Meta()
    spec: dict[str, Any]


Item = dict[str, Any]

# The store column of a reference, and where a resource file writes it.
FILE_FIELDS = {
    ("Domain", "access_control_list_ref"): "spec.accessControlListRef",
    ("Agent", "domain_ref"): "spec.domainRef",
    ("Agent", "credentials_ref"): "spec.credentialsRef",
    ("Peer", "access_control_list_ref"): "spec.accessControlListRef",
    ("Peer", "credentials_ref"): "spec.credentialsRef",
    ("Number", "trunk_ref"): "spec.trunkRef",
    ("Trunk", "access_control_list_ref"): "spec.inbound.accessControlListRef",
    ("Trunk", "inbound_credentials_ref"): "spec.inbound.credentialsRef",
    ("Trunk", "outbound_credentials_ref"): "spec.outbound.credentialsRef",
}


def load_resources(directory: Path) -> Resources:
    """Load every .yaml, .yml and .json file of a directory (missing directory: nothing).

    Each resource is checked as the APIServer checks it (the same rules, the same
    fields), and every reference must name a resource of the right kind.
    """
    from sipgrid.services.apiserver.files import to_store
    from sipgrid.services.apiserver.store import KINDS, InvalidArgument

    found: dict[str, tuple[str, str, Item]] = {}  # ref -> (where, kind, store fields)
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            document = read_document(path)
            items = document if isinstance(document, list) else [document] if document else []
            for index, item in enumerate(items):
                ref = item.get("ref", f"#{index}") if isinstance(item, dict) else f"#{index}"
                where = f"{path} ({ref})"
                resource = validate(_Resource, item, where)
                if resource.kind in _SPECS:
                    validate(_SPECS[resource.kind], resource.spec, where)
                data = to_store(resource.kind, item)
                try:
                    KINDS[resource.kind].validate(data)
                except InvalidArgument as error:
                    raise ConfigError(f"{where}: field spec.{error}") from None
                if resource.ref in found:
                    raise ConfigError(
                        f"{where}: field ref: duplicate ref {resource.ref!r} "
                        f"(also in {found[resource.ref][0]})"
                    )
                found[resource.ref] = (where, resource.kind, {**data, "ref": resource.ref})
    for where, kind, data in found.values():
        for column, target in KINDS[kind].refs.items():
            ref = data.get(column)
            if ref and (ref not in found or found[ref][1] != target):
                fieldname = FILE_FIELDS.get((kind, column), column)
                raise ConfigError(f"{where}: field {fieldname}: no {target} with ref {ref!r}")
        for index, policy in enumerate(data.get("egress_policies") or []):
            ref = policy.get("number_ref")
            if ref not in found or found[ref][1] != "Number":
                raise ConfigError(
                    f"{where}: field spec.context.egressPolicies[{index}].numberRef: "
                    f"no Number with ref {ref!r}"
                )
    _check_unique(found)
    by_kind: dict[str, list[Item]] = {}
    for _, kind, data in found.values():
        by_kind.setdefault(kind, []).append(data)
    return snapshot_from(by_kind)


def _check_unique(found: dict[str, tuple[str, str, Item]]) -> None:
    """What the database keeps unique, a set of files must too."""
    seen: dict[tuple[str, str, str], str] = {}
    unique = {
        "Domain": (("domain_uri",), "spec.context.domainUri"),
        "Agent": (("domain_ref", "username"), "spec.username"),
        "Number": (("tel_url",), "spec.location.telUrl"),
        "Peer": (("username",), "spec.username"),
        "Trunk": (("inbound_uri",), "spec.inbound.uri"),
    }
    for where, kind, data in found.values():
        if kind not in unique:
            continue
        columns, fieldname = unique[kind]
        value = "\n".join(str(data.get(c) or "") for c in columns)
        if not value.strip():
            continue
        key = (kind, fieldname, value.lower() if kind != "Agent" else value)
        if key in seen:
            shown = data.get(columns[-1])
            raise ConfigError(
                f"{where}: field {fieldname}: {shown!r} is used twice (also in {seen[key]})"
            )
        seen[key] = where


def _ref(item: Item, column: str, nested: str) -> str:
    """A reference as the store gives it (``domain_ref``) or as the API does (``domain.ref``)."""
    value = item.get(column)
    if value:
        return str(value)
    inner = item.get(nested)
    return str(inner.get("ref", "")) if isinstance(inner, dict) else ""


def _acl(a: Item) -> AccessControlList:
    return AccessControlList(
        a["ref"],
        a.get("name", ""),
        tuple(ipaddress.ip_network(n, strict=False) for n in a.get("allow", [])),
        tuple(ipaddress.ip_network(n, strict=False) for n in a.get("deny", [])),
    )


def _trunk_uri(u: Item) -> TrunkUri:
    return TrunkUri(
        str(u.get("host", "")),
        int(u.get("port") or 0),
        str(u.get("transport") or "").lower(),
        str(u.get("user") or ""),
        int(u.get("weight") or 0),
        int(u.get("priority") or 0),
        bool(u.get("enabled", True)),
    )


def _digest_algorithms(domain: Item) -> tuple[str, ...]:
    from .auth import parse_algorithms

    extended = domain.get("extended") or {}
    names = extended.get("digestAlgorithms") if isinstance(extended, dict) else None
    if not isinstance(names, list):
        return ()
    found = parse_algorithms([str(n) for n in names])
    if len(found) != len(names):
        log.warning(
            "domain %s: digestAlgorithms %s: only %s are known", domain["ref"], names, found
        )
    return found


def snapshot_from(given: dict[str, list[Item]]) -> Resources:
    """The Connect view of resources given by kind as store or API dictionaries
    (protobuf field names; credentials with their password). A field left out takes the
    store's default, as a resource file's does."""
    from sipgrid.services.apiserver.store import column_defaults

    items = {
        kind: [{**column_defaults(kind), **item} for item in listed]
        for kind, listed in given.items()
    }
    out = Resources()
    acls = {a["ref"]: _acl(a) for a in items.get("AccessControlList", [])}
    credentials = {
        c["ref"]: Credentials(c["ref"], c.get("username", ""), c.get("password", ""))
        for c in items.get("Credentials", [])
    }
    trunks: dict[str, Trunk] = {}
    for t in items.get("Trunk", []):
        trunk = Trunk(
            t["ref"],
            t.get("name", ""),
            str(t.get("inbound_uri") or ""),
            acls.get(_ref(t, "access_control_list_ref", "access_control_list")),
            credentials.get(_ref(t, "inbound_credentials_ref", "inbound_credentials")),
            credentials.get(_ref(t, "outbound_credentials_ref", "outbound_credentials")),
            bool(t.get("send_register", False)),
            tuple(_trunk_uri(u) for u in t.get("uris") or []),
        )
        trunks[trunk.ref] = trunk
        out.trunks.append(trunk)
    numbers: dict[str, Number] = {}
    for n in items.get("Number", []):
        number = Number(
            n["ref"],
            n.get("name", ""),
            str(n.get("tel_url", "")),
            str(n.get("aor_link", "")),
            trunks.get(_ref(n, "trunk_ref", "trunk")),
            str(n.get("session_affinity_header") or ""),
            tuple(
                (str(h.get("name", "")), str(h.get("value", "")))
                for h in n.get("extra_headers") or []
            ),
        )
        numbers[number.ref] = number
        out.numbers[number.digits] = number
    domains: dict[str, Domain] = {}
    for d in items.get("Domain", []):
        policies = []
        for p in d.get("egress_policies") or []:
            ref = _ref(p, "number_ref", "number")
            try:
                policies.append(EgressPolicy(re.compile(p.get("rule") or ""), ref))
            except re.error:
                log.warning("domain %s: egress rule %r is not a regular expression", d["ref"], p)
        domain = Domain(
            d["ref"],
            d.get("name", ""),
            d["domain_uri"],
            acls.get(_ref(d, "access_control_list_ref", "access_control_list")),
            tuple(policies),
            _digest_algorithms(d),
        )
        domains[d["ref"]] = domain
        out.domains[domain.domain_uri.lower()] = domain
    for a in items.get("Agent", []):
        home = domains.get(_ref(a, "domain_ref", "domain"))
        if home is None:
            continue
        agent = Agent(
            a["ref"],
            a.get("name", ""),
            a["username"],
            home,
            credentials.get(_ref(a, "credentials_ref", "credentials")),
            str(a["privacy"]).upper(),
            bool(a["enabled"]),
            int(a["max_contacts"]),
            int(a["expires"]),
        )
        out.agents[(home.domain_uri.lower(), agent.username)] = agent
    peers: dict[str, Peer] = {}
    for p in items.get("Peer", []):
        peer = Peer(
            p["ref"],
            p.get("name", ""),
            str(p.get("username", "")),
            str(p.get("aor", "")),
            str(p.get("contact_addr") or ""),
            credentials.get(_ref(p, "credentials_ref", "credentials")),
            acls.get(_ref(p, "access_control_list_ref", "access_control_list")),
            str(p["balancing_algorithm"]).upper(),
            bool(p["with_session_affinity"]),
            bool(p["enabled"]),
            int(p["max_contacts"]),
            int(p["expires"]),
        )
        peers[peer.ref] = peer
        out.peers[peer.username] = peer
        out.peers_by_aor[aor_key(peer.aor)] = peer
    out.by_ref = {**acls, **credentials, **trunks, **numbers, **domains, **peers}
    return out


REFRESH_INTERVAL = 0.5


async def keep_fresh(
    refresh: Callable[[], Awaitable[object]], errors: tuple[type[Exception], ...], what: str
) -> None:
    """Call ``refresh`` twice a second for ever; a failure is logged and tried again."""
    while True:
        try:
            await refresh()
        except errors as error:
            log.warning("cannot refresh the resources from %s: %s", what, error)
        await asyncio.sleep(REFRESH_INTERVAL)
