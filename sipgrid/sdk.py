"""The Python client of sipgrid's Connect API (Routr v2beta1 contracts).

    from sipgrid.sdk import ConnectClient
    client = ConnectClient("localhost:51908", api_key="sg_...")
    domain = client.domains.create(name="Local", domain_uri="sip.local")
    agent = client.agents.create(name="Alice", username="1001", domain_ref=domain.ref)
    for agent in client.agents.list():
        print(agent.username, agent.domain.domain_uri)

Each resource has create, update, get, delete, list (iterating over every page) and
find_by; they return the protobuf messages of sipgrid.pb and raise the errors below.
"""

from __future__ import annotations

import base64
import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message

from sipgrid.pb import (
    acl_pb2,
    acl_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    credentials_pb2,
    credentials_pb2_grpc,
    domains_pb2,
    domains_pb2_grpc,
    numbers_pb2,
    numbers_pb2_grpc,
    peers_pb2,
    peers_pb2_grpc,
    trunks_pb2,
    trunks_pb2_grpc,
)


class SdkError(Exception):
    """A call failed; ``code`` is the gRPC status."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(SdkError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SdkError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SdkError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(SdkError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(SdkError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(SdkError):
    code = grpc.StatusCode.UNAVAILABLE


_ERRORS = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        Unavailable,
    )
}


class Resource:
    """One resource service (Agents, Domains, ...)."""

    def __init__(
        self, client: ConnectClient, kind: str, module: Any, stub: Any, service: str
    ) -> None:
        self.kind = kind
        self._client = client
        self._stub = stub(client.channel)
        descriptor = module.DESCRIPTOR.services_by_name[service]
        self._requests = {
            m.name: message_factory.GetMessageClass(m.input_type) for m in descriptor.methods
        }

    def _call(self, method: str, **fields: Any) -> Any:
        return self._invoke(
            method, self._requests[method](**{k: v for k, v in fields.items() if v is not None})
        )

    def _invoke(self, method: str, request: Message) -> Any:
        try:
            return getattr(self._stub, method)(
                request, metadata=self._client.metadata, timeout=self._client.timeout
            )
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            raise _ERRORS.get(code, SdkError)(
                f"{self.kind} {method}: {code.name}: {error.details()}"
            ) from None  # type: ignore[attr-defined]

    def create(self, **fields: Any) -> Any:
        return self._call("Create", **fields)

    def update(self, ref: str, **fields: Any) -> Any:
        return self._call("Update", ref=ref, **fields)

    def get(self, ref: str) -> Any:
        return self._call("Get", ref=ref)

    def delete(self, ref: str) -> None:
        self._call("Delete", ref=ref)

    def list(self, page_size: int = 100) -> Iterator[Any]:
        token = ""
        while True:
            page = self._call("List", page_size=page_size, page_token=token)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def create_from_dict(self, data: dict[str, Any]) -> Any:
        """Create from a dict of protobuf field names (unknown names are ignored)."""
        return self._call_with("Create", data)

    def update_from_dict(self, ref: str, data: dict[str, Any]) -> Any:
        return self._call_with("Update", {**data, "ref": ref})

    def _call_with(self, method: str, data: dict[str, Any]) -> Any:
        from google.protobuf import json_format

        values = {k: v for k, v in data.items() if v is not None}
        request = json_format.ParseDict(
            values, self._requests[method](), ignore_unknown_fields=True
        )
        return self._invoke(method, request)

    def find_by(self, field_name: str, field_value: str) -> builtins.list[Any]:
        request_fields = self._requests["FindBy"].DESCRIPTOR.fields_by_name
        if "fieldName" in request_fields:  # Routr's Peers spell these in camelCase
            return list(self._call("FindBy", fieldName=field_name, fieldValue=field_value).items)
        return list(self._call("FindBy", field_name=field_name, field_value=field_value).items)


class ConnectClient:
    """A connection to an APIServer; credentials: an API key, or an API user's name and password."""

    def __init__(
        self,
        endpoint: str = "localhost:51908",
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_cert: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        if tls or ca_cert is not None:
            root = ca_cert.read_bytes() if ca_cert is not None else None
            self.channel = grpc.secure_channel(
                endpoint, grpc.ssl_channel_credentials(root_certificates=root)
            )
        else:
            self.channel = grpc.insecure_channel(endpoint)
        self.metadata: list[tuple[str, str]] = []
        if api_key:
            self.metadata.append(("authorization", f"Bearer {api_key}"))
        elif username and password:
            self.metadata.append(
                (
                    "authorization",
                    "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode(),
                )
            )
        self.timeout = timeout
        self.acls = Resource(
            self, "AccessControlList", acl_pb2, acl_pb2_grpc.ACLServiceStub, "ACLService"
        )
        self.agents = Resource(self, "Agent", agents_pb2, agents_pb2_grpc.AgentsStub, "Agents")
        self.credentials = Resource(
            self,
            "Credentials",
            credentials_pb2,
            credentials_pb2_grpc.CredentialsServiceStub,
            "CredentialsService",
        )
        self.domains = Resource(
            self, "Domain", domains_pb2, domains_pb2_grpc.DomainsStub, "Domains"
        )
        self.numbers = Resource(
            self, "Number", numbers_pb2, numbers_pb2_grpc.NumbersStub, "Numbers"
        )
        self.peers = Resource(self, "Peer", peers_pb2, peers_pb2_grpc.PeersStub, "Peers")
        self.trunks = Resource(self, "Trunk", trunks_pb2, trunks_pb2_grpc.TrunksStub, "Trunks")

    def resource(self, kind: str) -> Resource:
        for resource in (
            self.acls,
            self.agents,
            self.credentials,
            self.domains,
            self.numbers,
            self.peers,
            self.trunks,
        ):
            if resource.kind == kind:
                return resource
        raise KeyError(kind)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_dict(message: Message) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def create_token(
    private_key: Path | str,
    *,
    aor: str,
    methods: Iterator[str] | list[str] | tuple[str, ...] = ("REGISTER", "INVITE"),
    ttl: float = 3600.0,
    **claims: Any,
) -> str:
    """An X-Connect-Token for a browser phone, signed with a PEM private key (RSA or EC
    P-256) whose public key sipgrid verifies with. ``claims``: domain, domain_ref,
    aor_link, ref, privacy, max_contacts. Raises ValueError for a bad key or claim."""
    from sipgrid.config import ConfigError
    from sipgrid.services.connect.tokens import load_private_key, mint

    try:
        key = load_private_key(Path(private_key))
    except ConfigError as error:
        raise ValueError(str(error)) from None
    return mint(key, aor=aor, methods=list(methods), ttl=ttl, **claims)
