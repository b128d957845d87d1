"""Connect resources from files in Routr's format.

A resources directory holds YAML or JSON files, each a list of
``{apiVersion, kind, ref, metadata, spec}``. Refs are resolved at load; an error names
the file, the ref and the field.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipgrid.config import ConfigError, check_networks, read_document, validate

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
    privacy: str = "None"
    enabled: bool = True
    max_contacts: int = Field(0, alias="maxContacts", ge=0)
    expires: int = Field(0, ge=0)


class _Resource(_Model):
    api_version: str = Field("v2beta1", alias="apiVersion")
    kind: Literal["Domain", "Agent", "Credentials", "AccessControlList", "Peer", "Number", "Trunk"]
    ref: str = Field(min_length=1)
    metadata: _Meta = _Meta()
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AccessControlList:
    ref: str
    name: str
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    deny: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def permits(self, address: str) -> bool:
        """Allowed when an allow rule matches; else denied when a deny rule matches."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if any(ip in net for net in self.allow):
            return True
        return not any(ip in net for net in self.deny)


@dataclass(frozen=True, slots=True)
class Credentials:
    ref: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Domain:
    ref: str
    name: str
    domain_uri: str
    acl: AccessControlList | None


@dataclass(frozen=True, slots=True)
class Agent:
    ref: str
    name: str
    username: str
    domain: Domain
    credentials: Credentials | None
    privacy: str
    enabled: bool
    max_contacts: int
    expires: int


@dataclass(slots=True)
class Resources:
    """What the Connect processor reads: indexed for lookups on the SIP path."""

    domains: dict[str, Domain] = field(default_factory=dict)  # by domain URI (lower case)
    agents: dict[tuple[str, str], Agent] = field(default_factory=dict)  # by (domain URI, username)
    by_ref: dict[str, object] = field(default_factory=dict)

    def domain(self, host: str) -> Domain | None:
        return self.domains.get(host.lower())

    def agent(self, domain_uri: str, username: str) -> Agent | None:
        return self.agents.get((domain_uri.lower(), username))

    def password_for(self, domain_uri: str, username: str) -> str | None:
        """The password of an enabled agent with credentials, else None (not allowed in)."""
        agent = self.agent(domain_uri, username)
        if agent is None or agent.credentials is None or not agent.enabled:
            return None
        return agent.credentials.password


def load_resources(directory: Path) -> Resources:
    """Load every .yaml, .yml and .json file of a directory (missing directory: nothing)."""
    raw: list[tuple[str, _Resource]] = []
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            document = read_document(path)
            items = document if isinstance(document, list) else [document] if document else []
            for index, item in enumerate(items):
                ref = item.get("ref", f"#{index}") if isinstance(item, dict) else f"#{index}"
                raw.append((f"{path} ({ref})", validate(_Resource, item, f"{path} ({ref})")))
    return build_resources(raw)


def build_resources(raw: list[tuple[str, _Resource]]) -> Resources:
    specs: dict[str, tuple[str, _Resource]] = {}
    for where, resource in raw:
        if resource.ref in specs:
            raise ConfigError(
                f"{where}: field ref: duplicate ref {resource.ref!r} (also in {specs[resource.ref][0]})"
            )
        specs[resource.ref] = (where, resource)
    out = Resources()

    def resolve(where: str, ref: str | None, kind: str, fieldname: str) -> Any:
        if ref is None:
            return None
        if ref not in specs or specs[ref][1].kind != kind:
            raise ConfigError(f"{where}: field spec.{fieldname}: no {kind} with ref {ref!r}")
        return out.by_ref[ref]

    order = ["AccessControlList", "Credentials", "Domain", "Agent"]
    for kind in order:
        for where, resource in (specs[r] for r in specs if specs[r][1].kind == kind):
            out.by_ref[resource.ref] = _build(kind, where, resource, resolve, out)
    return out


def _build(kind: str, where: str, resource: _Resource, resolve: Any, out: Resources) -> object:
    name = resource.metadata.name
    if kind == "AccessControlList":
        lists = validate(_AclSpec, resource.spec, where).access_control_list
        return AccessControlList(
            resource.ref,
            name,
            tuple(ipaddress.ip_network(n, strict=False) for n in lists.allow),
            tuple(ipaddress.ip_network(n, strict=False) for n in lists.deny),
        )
    if kind == "Credentials":
        pair = validate(_CredentialsSpec, resource.spec, where).credentials
        return Credentials(resource.ref, pair.username, pair.password)
    if kind == "Domain":
        spec = validate(_DomainSpec, resource.spec, where)
        domain = Domain(
            resource.ref,
            name,
            spec.context.domain_uri,
            resolve(
                where, spec.access_control_list_ref, "AccessControlList", "accessControlListRef"
            ),
        )
        if domain.domain_uri.lower() in out.domains:
            raise ConfigError(
                f"{where}: field spec.context.domainUri: {domain.domain_uri!r} is used twice"
            )
        out.domains[domain.domain_uri.lower()] = domain
        return domain
    spec_a = validate(_AgentSpec, resource.spec, where)
    agent = Agent(
        resource.ref,
        name,
        spec_a.username,
        resolve(where, spec_a.domain_ref, "Domain", "domainRef"),
        resolve(where, spec_a.credentials_ref, "Credentials", "credentialsRef"),
        spec_a.privacy,
        spec_a.enabled,
        spec_a.max_contacts,
        spec_a.expires,
    )
    key = (agent.domain.domain_uri.lower(), agent.username)
    if key in out.agents:
        raise ConfigError(
            f"{where}: field spec.username: {agent.username!r} is used twice in {agent.domain.domain_uri}"
        )
    out.agents[key] = agent
    return agent


Item = dict[str, Any]


def _ref(item: Item, column: str, nested: str) -> str:
    """A reference as the store gives it (``domain_ref``) or as the API does (``domain.ref``)."""
    value = item.get(column)
    if value:
        return str(value)
    inner = item.get(nested)
    return str(inner.get("ref", "")) if isinstance(inner, dict) else ""


def snapshot_from(
    acl_items: list[Item],
    credential_items: list[Item],
    domain_items: list[Item],
    agent_items: list[Item],
) -> Resources:
    """The Connect view of API resources (protobuf field names; credentials with their password)."""
    out = Resources()
    acls = {
        a["ref"]: AccessControlList(
            a["ref"],
            a.get("name", ""),
            tuple(ipaddress.ip_network(n, strict=False) for n in a.get("allow", [])),
            tuple(ipaddress.ip_network(n, strict=False) for n in a.get("deny", [])),
        )
        for a in acl_items
    }
    credentials = {
        c["ref"]: Credentials(c["ref"], c.get("username", ""), c.get("password", ""))
        for c in credential_items
    }
    domains: dict[str, Domain] = {}
    for d in domain_items:
        domain = Domain(
            d["ref"],
            d.get("name", ""),
            d["domain_uri"],
            acls.get(_ref(d, "access_control_list_ref", "access_control_list")),
        )
        domains[d["ref"]] = domain
        out.domains[domain.domain_uri.lower()] = domain
    for a in agent_items:
        home = domains.get(_ref(a, "domain_ref", "domain"))
        if home is None:
            continue
        agent = Agent(
            a["ref"],
            a.get("name", ""),
            a["username"],
            home,
            credentials.get(_ref(a, "credentials_ref", "credentials")),
            str(a.get("privacy", "PRIVATE")),  # the protobuf default, omitted from its dict
            bool(a.get("enabled", False)),
            int(a.get("max_contacts", 0)),
            int(a.get("expires", 0)),
        )
        out.agents[(home.domain_uri.lower(), agent.username)] = agent
    out.by_ref = {**acls, **credentials, **domains}
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
