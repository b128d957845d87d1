"""The APIServer: the Connect API on an internal port (services only, loopback unless
configured) and an external port that requires an API key, TLS when configured."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sipgrid.pb import store_pb2, store_pb2_grpc
from sipgrid.services.grpc_options import SERVER_OPTIONS, bind_grpc, internal_interceptors
from sipgrid.services.metrics import MetricsInterceptor
from sipgrid.services.settings import Settings

from .api import SERVICES, ApiKeys, ApiUsers, AuthInterceptor, ConnectApi
from .database import database_url, make_engine, migrate
from .store import Cipher, ResourceStore, StoreError


@dataclass(frozen=True)
class Tls:
    """The external port's certificate and key (PEM); with client_ca, clients must
    present a certificate signed by it."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None


@dataclass
class ApiServer:
    store: ResourceStore
    keys: ApiKeys
    users: ApiUsers
    servers: list[grpc.aio.Server]
    first_key: str | None
    ports: tuple[int, int] = (0, 0)  # internal, external: bound ("host:0" picks free ones)

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop(grace=1.0)


class StoreServicer(store_pb2_grpc.StoreServicer):
    """The store's revision, for Connect instances that keep a snapshot of it."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def Revision(
        self, request: store_pb2.RevisionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> store_pb2.RevisionResponse:
        try:
            revision = await asyncio.to_thread(self._store.revision)
        except StoreError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        return store_pb2.RevisionResponse(revision=revision)


async def _serve(
    api: ConnectApi,
    address: str,
    interceptors: list[grpc.aio.ServerInterceptor],
    tls: Tls | None = None,
    store: ResourceStore | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The Connect API on ``address``; with ``store``, its revision too (internal only)."""
    server = grpc.aio.server(
        interceptors=[*interceptors, MetricsInterceptor()], options=SERVER_OPTIONS
    )
    server.add_generic_rpc_handlers(api.handlers())
    if store is not None:
        store_pb2_grpc.add_StoreServicer_to_server(StoreServicer(store), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if tls is not None:
        credentials = grpc.ssl_server_credentials(
            [(tls.key, tls.cert)],
            root_certificates=tls.client_ca,
            require_client_auth=tls.client_ca is not None,
        )
        port = bind_grpc(server, address, credentials)
    else:
        port = bind_grpc(server, address)
    await server.start()
    for name in ["", *(s.full_name for s in SERVICES)]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


FIRST_KEY_FILE = "first-api-key"


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read, in a directory only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def owner_only(url: str) -> None:
    """The SQLite database and its journal files readable by their owner only."""
    if not url.startswith("sqlite:///"):
        return
    database = Path(url.removeprefix("sqlite:///"))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-journal")):
        if path.exists():
            path.chmod(0o600)


async def start_apiserver(
    settings: Settings | None = None,
    *,
    data_dir: Path | None = None,
    internal_addr: str | None = None,
    external_addr: str | None = None,
) -> ApiServer:
    """Migrate the database, then serve. At first start an API key is made, written to
    ``<data dir>/first-api-key`` (readable by the owner only; the caller says where) and
    returned once; only its hash is kept."""
    env = settings or Settings.load()
    data_dir = data_dir or env.data_dir
    url = database_url(env, data_dir)
    engine = make_engine(url)
    migrate(engine)
    owner_only(url)
    store = ResourceStore(engine, Cipher(key_file=data_dir / "secret.key", secret=env.secret_key))
    keys = ApiKeys(engine)
    users = ApiUsers(engine)
    if env.api_username and env.api_password:
        users.set(env.api_username, env.api_password)
    first_key = keys.create("first key") if keys.count() == 0 else None
    if first_key is not None:
        write_private(data_dir / FIRST_KEY_FILE, first_key + "\n")
    api = ConnectApi(store)
    internal_api = ConnectApi(store, reveal_passwords=True)
    internal = internal_addr or env.internal_bind_addr
    external = external_addr or env.external_bind_addr
    tls = None
    if env.tls_cert and env.tls_key:
        client_ca = Path(env.tls_client_ca).read_bytes() if env.tls_client_ca else None
        tls = Tls(Path(env.tls_cert).read_bytes(), Path(env.tls_key).read_bytes(), client_ca)
    inside, inside_port = await _serve(internal_api, internal, internal_interceptors(), store=store)
    outside, outside_port = await _serve(api, external, [AuthInterceptor(keys, users)], tls)
    return ApiServer(store, keys, users, [inside, outside], first_key, (inside_port, outside_port))


def attach_apiserver(settings: Settings, data_dir: Path | None = None) -> ApiServer:
    """The store of an APIServer that another process serves and has migrated (worker 0
    of several, for the other workers): no migration, no ports."""
    data_dir = data_dir or settings.data_dir
    engine = make_engine(database_url(settings, data_dir))
    cipher = Cipher(key_file=data_dir / "secret.key", secret=settings.secret_key)
    return ApiServer(ResourceStore(engine, cipher), ApiKeys(engine), ApiUsers(engine), [], None)


async def open_apiserver(
    settings: Settings,
    config_dir: Path,
    *,
    data_dir: Path | None = None,
    internal_addr: str | None = None,
) -> ApiServer:
    """The APIServer as a start runs it: serving, the first API key's file announced, and
    the resource files of ``config_dir/resources`` applied."""
    api = await start_apiserver(settings, data_dir=data_dir, internal_addr=internal_addr)
    if api.first_key:
        where = (data_dir or settings.data_dir) / FIRST_KEY_FILE
        print(
            f"sipgrid: the first API key is in {where} (readable by you only; keep it, then "
            "delete the file)",
            flush=True,
        )
    if (config_dir / "resources").is_dir():
        from .files import apply

        await asyncio.to_thread(apply, api.store, config_dir / "resources")
    return api
