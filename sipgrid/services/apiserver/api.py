"""The Connect API over gRPC: Routr's seven resource services, served from the store.

One generic handler per service: the request message becomes a dict (protobuf field
names), the store does the work in a thread, the result becomes the response message.
Store errors map to gRPC status codes; the message names the field or the reference.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, message_factory
from google.protobuf.message import Message as ProtoMessage
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipgrid.pb import (
    acl_pb2,
    agents_pb2,
    credentials_pb2,
    domains_pb2,
    numbers_pb2,
    peers_pb2,
    trunks_pb2,
)
from sipgrid.services.grpc_options import unauthenticated

from .schema import ApiKeyRow, ApiUserRow
from .store import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceStore,
    StoreError,
    Unavailable,
)


@dataclass(frozen=True)
class Service:
    full_name: str
    kind: str
    module: Any


SERVICES = [
    Service("fonoster.routr.connect.acl.v2beta1.ACLService", "AccessControlList", acl_pb2),
    Service("fonoster.routr.connect.agents.v2beta1.Agents", "Agent", agents_pb2),
    Service(
        "fonoster.routr.connect.credentials.v2beta1.CredentialsService",
        "Credentials",
        credentials_pb2,
    ),
    Service("fonoster.routr.connect.domains.v2beta1.Domains", "Domain", domains_pb2),
    Service("fonoster.routr.connect.numbers.v2beta1.Numbers", "Number", numbers_pb2),
    Service("fonoster.routr.connect.peers.v2beta1.Peers", "Peer", peers_pb2),
    Service("fonoster.routr.connect.trunks.v2beta1.Trunks", "Trunk", trunks_pb2),
]

_CODES: list[tuple[type[StoreError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def _to_dict(message: ProtoMessage) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def _to_message(data: dict[str, Any], cls: type[ProtoMessage]) -> ProtoMessage:
    return json_format.ParseDict(data, cls(), ignore_unknown_fields=True)


class ConnectApi:
    """The handlers of the seven services over one store."""

    def __init__(self, store: ResourceStore, *, reveal_passwords: bool = False) -> None:
        """``reveal_passwords`` is for the internal port only: the services (Connect)
        need the agents' passwords to check digest answers; the external API never
        returns them."""
        self.store = store
        self.reveal_passwords = reveal_passwords

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [self._handler(service) for service in SERVICES]

    def _handler(self, service: Service) -> grpc.GenericRpcHandler:
        descriptor = service.module.DESCRIPTOR.services_by_name[service.full_name.rsplit(".", 1)[1]]
        methods = {}
        for method in descriptor.methods:
            request_cls = message_factory.GetMessageClass(method.input_type)
            response_cls = message_factory.GetMessageClass(method.output_type)
            call = self._call(service.kind, method.name, response_cls)
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                call,
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(service.full_name, methods)

    def _call(
        self, kind: str, method: str, response_cls: type[ProtoMessage]
    ) -> Callable[[ProtoMessage, grpc.aio.ServicerContext[Any, Any]], Awaitable[ProtoMessage]]:
        async def call(
            request: ProtoMessage, context: grpc.aio.ServicerContext[Any, Any]
        ) -> ProtoMessage:
            data = _to_dict(request)
            try:
                result = await asyncio.to_thread(self._run, kind, method, data)
            except StoreError as error:
                code = next(c for t, c in _CODES if isinstance(error, t))
                await context.abort(code, str(error))
            if result is None:
                return empty_pb2.Empty()
            if self.reveal_passwords and kind == "Credentials":
                await asyncio.to_thread(self._reveal, result)
            return _to_message(result, response_cls)

        return call

    def _reveal(self, result: dict[str, Any]) -> None:
        for item in result.get("items", [result]):
            if item.get("ref"):
                item["password"] = self.store.password(item["ref"])

    def _run(self, kind: str, method: str, data: dict[str, Any]) -> dict[str, Any] | None:
        store = self.store
        match method:
            case "Create":
                return store.create(kind, data, ref=data.pop("ref", "") or None)
            case "Update":
                return store.update(kind, data.pop("ref", ""), data)
            case "Get":
                return store.get(kind, data.get("ref", ""))
            case "Delete":
                store.delete(kind, data.get("ref", ""))
                return None
            case "List":
                items, token = store.list_page(
                    kind, int(data.get("page_size") or 0), data.get("page_token") or ""
                )
                return {"items": items, "next_page_token": token}
            case "FindBy":
                name = data.get("field_name") or data.get("fieldName") or ""
                value = data.get("field_value") or data.get("fieldValue") or ""
                return {"items": store.find_by(kind, name, value)}
        raise InvalidArgument("method", f"unknown method {method}")


class ApiKeys:
    """Bearer keys of the external API, kept in the database as SHA-256 hashes; a check
    is cached for a second so a revocation reaches every instance within a second."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._cache: dict[str, tuple[bool, float]] = {}

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def create(self, name: str = "") -> str:
        key = "sg_" + secrets.token_urlsafe(32)
        with Session(self._engine) as session, session.begin():
            session.add(
                ApiKeyRow(key_hash=self.digest(key), name=name, created_at=int(time.time()))
            )
        return key

    def revoke(self, key: str) -> bool:
        with Session(self._engine) as session, session.begin():
            row = session.get(ApiKeyRow, self.digest(key))
            if row is not None:
                session.delete(row)
        self._cache.clear()
        return row is not None

    def count(self) -> int:
        with Session(self._engine) as session:
            return len(session.scalars(select(ApiKeyRow.key_hash)).all())

    def valid(self, key: str) -> bool:
        digest = self.digest(key)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < 1.0:
            return hit[0]
        with Session(self._engine) as session:
            ok = session.get(ApiKeyRow, digest) is not None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (ok, now)
        return ok


_DECOY = "scrypt$" + "00" * 16 + "$" + "00" * 64  # hashed against for unknown users


class ApiUsers:
    """Users of the external API for HTTP Basic; passwords kept as scrypt hashes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def _hash(password: str, salt: bytes) -> str:
        digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
        return f"scrypt${salt.hex()}${digest.hex()}"

    def set(self, username: str, password: str) -> None:
        if not username or not password:
            raise InvalidArgument("username" if not username else "password", "is required")
        with Session(self._engine) as session, session.begin():
            session.merge(
                ApiUserRow(
                    username=username,
                    password_hash=self._hash(password, secrets.token_bytes(16)),
                    created_at=int(time.time()),
                )
            )

    def remove(self, username: str) -> bool:
        with Session(self._engine) as session, session.begin():
            row = session.get(ApiUserRow, username)
            if row is not None:
                session.delete(row)
            return row is not None

    def valid(self, username: str, password: str) -> bool:
        """The same work for an unknown user as for a known one: response times do not
        tell which usernames exist."""
        with Session(self._engine) as session:
            row = session.get(ApiUserRow, username)
        stored = row.password_hash if row is not None else _DECOY
        _, salt, _ = stored.split("$")
        matches = hmac.compare_digest(stored, self._hash(password, bytes.fromhex(salt)))
        return matches and row is not None


LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = 60.0


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """The external API: every call needs ``authorization: Bearer <api key>`` or
    ``Basic <user:password>`` of an API user."""

    def __init__(
        self,
        keys: ApiKeys,
        users: ApiUsers | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._users = users
        self._clock = clock
        self._failures: dict[str, list[float]] = {}  # username -> times of recent failures

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        value = str(metadata.get("authorization", ""))
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and await asyncio.to_thread(self._keys.valid, token.strip()):
            return await continuation(handler_call_details)
        if scheme.lower() == "basic" and self._users is not None:
            try:
                username, _, password = base64.b64decode(token.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                username = password = ""
            users = self._users
            locked = self._locked(username)
            known: bool = bool(username) and await asyncio.to_thread(
                users.valid, username, password
            )
            if known and not locked:
                self._failures.pop(username, None)
                return await continuation(handler_call_details)
            if not known:
                self._failed(username)

        return unauthenticated(
            "a valid 'authorization' is required: Bearer <api key> or Basic <user:password>"
        )

    def _locked(self, username: str) -> bool:
        """LOCKOUT_FAILURES wrong passwords within LOCKOUT_WINDOW seconds lock a user out for
        that long, right password or not: guessing gets a handful of tries a minute."""
        now = self._clock()
        recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_WINDOW]
        if recent:
            self._failures[username] = recent
        else:
            self._failures.pop(username, None)
        return len(recent) >= LOCKOUT_FAILURES

    def _failed(self, username: str) -> None:
        if len(self._failures) > 100_000:  # a flood of invented names: forget the oldest
            self._failures.clear()
        self._failures.setdefault(username, []).append(self._clock())
