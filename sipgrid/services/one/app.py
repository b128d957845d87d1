"""The all-in-one wiring: every service in one process, called directly (no gRPC on the SIP path)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from sipgrid.api.types import LocationService, Processor, Transport
from sipgrid.config import ConfigError, load
from sipgrid.services.apiserver.bans import DatabaseBans
from sipgrid.services.apiserver.bindings import DatabaseBindings
from sipgrid.services.apiserver.server import ApiServer, attach_apiserver, open_apiserver
from sipgrid.services.connect.auth import Authenticator, NonceCounts, RedisNonceCounts
from sipgrid.services.connect.context import ALLOW
from sipgrid.services.connect.guard import Guard, GuardSettings
from sipgrid.services.connect.probe import PeerProber
from sipgrid.services.connect.processor import ConnectProcessor
from sipgrid.services.connect.routing import Balancer, RedisTurns
from sipgrid.services.connect.store_resources import StoreResources
from sipgrid.services.connect.tokens import (
    PUBLIC_KEY_FILE,
    TokenVerifier,
    ensure_key_pair,
    verifier_from,
)
from sipgrid.services.dispatcher.dispatcher import Dispatcher, DispatcherConfig, load_dispatcher
from sipgrid.services.edgeport.config import load_edgeport
from sipgrid.services.edgeport.server import EdgePort
from sipgrid.services.events import events_from
from sipgrid.services.grpc_servers import Served, start_server
from sipgrid.services.location.config import LocationConfig, redis_url
from sipgrid.services.location.expiry import ExpiryEvents
from sipgrid.services.location.persistent import PersistentLocation
from sipgrid.services.location.redis_store import RedisLocation
from sipgrid.services.registry.registry import Registry
from sipgrid.services.rtprelay.relay import relay_from
from sipgrid.services.serve import count_bindings, until_stopped
from sipgrid.services.settings import Settings

log = logging.getLogger("sipgrid.one")

CONNECT_PORT = 51904


RTPRELAY_PORT = 51903
ALL_METHODS = [
    *(m.strip() for m in ALLOW.split(",")),
    "SUBSCRIBE",
    "PUBLISH",
]
# Connect for every method, then the media relay on what it routed (RTPENGINE_HOST set
# and no dispatcher.yaml of one's own)
IN_PROCESS_RELAY = {
    "kind": "MessageDispatcher",
    "spec": {
        "processors": [
            {"ref": "connect-processor", "addr": f"local:{CONNECT_PORT}", "methods": ALL_METHODS}
        ],
        "middlewares": [
            {"ref": "rtprelay", "addr": f"local:{RTPRELAY_PORT}", "postProcessor": True}
        ],
    },
}


def is_local_rtprelay(ref: str, addr: str) -> bool:
    return addr.rsplit(":", 1)[-1] == str(RTPRELAY_PORT) or ref == "rtprelay"


def is_local_connect(ref: str, addr: str) -> bool:
    """In the all-in-one wiring, the Connect processor's address is served in process."""
    return addr.rsplit(":", 1)[-1] == str(CONNECT_PORT) or ref == "connect-processor"


@dataclass
class AllInOne:
    edgeport: EdgePort
    api: ApiServer
    refresher: asyncio.Task[None]
    location_server: Served | None  # worker 0's alone, with workers
    guarding: asyncio.Task[None]
    persistent: PersistentLocation | None = None
    flushing: asyncio.Task[None] | None = None
    prober: PeerProber | None = None
    probing: asyncio.Task[None] | None = None
    registry: Registry | None = None
    registering: asyncio.Task[None] | None = None
    expiry: ExpiryEvents | None = None  # endpoint.expired, when events go to NATS
    sweeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """SIP up, then the static peers' probes and the trunks' registrations (they go
        out through the EdgePort)."""
        await self.edgeport.start()  # and the events' NATS client
        if self.expiry is not None:
            self.sweeping = asyncio.create_task(self.expiry.run())
        if self.prober is not None:
            self.probing = asyncio.create_task(self.prober.run())
        if self.registry is not None:
            self.registering = asyncio.create_task(self.registry.run())

    async def stop(self) -> None:
        if self.registering is not None:
            self.registering.cancel()
        if self.registry is not None:
            await self.registry.stop()  # unregister the trunks
        if self.probing is not None:
            self.probing.cancel()
        if self.sweeping is not None:
            self.sweeping.cancel()
        self.refresher.cancel()
        self.guarding.cancel()
        if self.flushing is not None:
            self.flushing.cancel()
        if self.persistent is not None:
            await self.persistent.flush()  # what changed in the last second
        await self.edgeport.stop()
        await self.api.stop()
        if self.location_server is not None:
            await self.location_server.stop(grace=1.0)


async def build(
    config_dir: Path, data_dir: Path | None = None, settings: Settings | None = None
) -> AllInOne:
    env = settings or Settings.load()
    edge_config = load_edgeport(config_dir / "edgeport.yaml", env)
    location_path = config_dir / "location.yaml"
    location_config = load(LocationConfig, location_path) if location_path.exists() else None
    redis = redis_url(location_config, env.redis_url, str(location_path))
    data = data_dir or env.data_dir
    # several workers on one port (SIPGRID_WORKERS): what is done once, worker 0 does
    place = env.worker_place()
    first = place is None or place.index == 0
    if place is not None and redis is None:
        raise ConfigError(
            f"{location_path}: field spec.cache.provider: {place.count} workers "
            "(SIPGRID_WORKERS) share their bindings through Redis: it must be redis"
        )
    if first:
        api = await open_apiserver(env, config_dir, data_dir=data)
    else:
        api = attach_apiserver(env, data)
    resources = StoreResources(api.store)
    location: LocationService
    counts: NonceCounts | None = None
    balancer: Balancer | None = None
    persistent: PersistentLocation | None = None
    if redis is None:  # memory, kept in the database across restarts
        persistent = PersistentLocation(
            DatabaseBindings(api.store.engine), write_through=env.location_write == "through"
        )
        kept = await persistent.load()
        if kept:
            print(f"sipgrid: bindings kept from before the restart: {kept}", flush=True)
        location = persistent
        count_bindings(persistent)
    else:  # bindings and nonce counts shared through Redis
        shared = RedisLocation.from_url(redis)
        location, counts = shared, RedisNonceCounts(shared.client)
        balancer = Balancer(RedisTurns(shared.client))
    events = events_from(env)  # the EdgePort's, shared
    expiry = None
    if events is not None and first:
        location = expiry = ExpiryEvents(location, events)
        await expiry.watch_stored()
    # `sipgrid bans` sees and lifts bans
    guard = Guard(GuardSettings.of(env), store=DatabaseBans(api.store.engine))
    connect = ConnectProcessor(
        resources.current,
        location,
        Authenticator.from_settings(env, counts=counts),
        guard=guard,
        balancer=balancer,
        tokens=token_verifier(env, data),
    )
    processor: Processor = connect
    relay = relay_from(env)  # rtpengine for browser phones, when configured
    dispatcher_path = config_dir / "dispatcher.yaml"
    dispatcher_config = None
    if dispatcher_path.exists():
        dispatcher_config = load_dispatcher(dispatcher_path)
    elif relay is not None:
        dispatcher_config = DispatcherConfig.model_validate(IN_PROCESS_RELAY)
    if dispatcher_config is not None:

        def resolve(ref: str, addr: str) -> Processor:
            if is_local_connect(ref, addr):
                return connect
            if relay is not None and is_local_rtprelay(ref, addr):
                return relay
            from sipgrid.services.grpc_clients import GrpcProcessor

            return GrpcProcessor(addr)

        processor = Dispatcher(dispatcher_config, resolve)
    refresher = asyncio.create_task(resources.run())
    guarding = asyncio.create_task(guard.run())
    flushing = asyncio.create_task(persistent.run()) if persistent is not None else None
    domains = list(resources().domains)  # the self-signed TLS certificate names them
    edgeport = EdgePort(
        edge_config,
        processor,
        data_dir=data,
        tls_names=domains,
        phone_page=env.phone_page == "on",
        events=events,
        settings=env,
        banned=guard.banned,
    )
    connect.prober = PeerProber(resources, edgeport.request, interval=env.peer_probe_interval)
    registry = Registry(
        resources, edgeport.request, edgeport.contact_point, backoff=env.registry_backoff
    )
    # Location and the Registry's status on loopback too, for `sipgrid registrations list`
    # and `sipgrid trunks status`
    if not first:  # registrations and the Location port are worker 0's
        # each worker probes the static peers itself: its calls go by what it found (an
        # answer comes back to the worker that asked, by its Via branch)
        return AllInOne(edgeport, api, refresher, None, guarding, prober=connect.prober)
    location_server = await start_server(
        env.location_bind_addr,
        location=location,
        registry=registry,
    )
    return AllInOne(
        edgeport,
        api,
        refresher,
        location_server,
        guarding,
        persistent,
        flushing,
        connect.prober,
        registry=registry,
        expiry=expiry,
    )


def token_verifier(settings: Settings, data: Path) -> TokenVerifier | None:
    """Routr's CONNECT_VERIFIER_* variables, else a key pair of our own in the data
    directory, made at first start, so that `sipgrid tokens create` works out of the box."""
    if not settings.verifier_public_key_path and not settings.verifier_addr:
        private, made = ensure_key_pair(data)
        if made:
            print(
                f"sipgrid: X-Connect-Token keys made: {private} signs (sipgrid tokens create), "
                f"{data / PUBLIC_KEY_FILE} verifies",
                flush=True,
            )
    return verifier_from(settings, data)


async def run(config_dir: Path) -> None:
    settings = Settings.load()  # checked before anything starts
    app = await build(config_dir, settings=settings)
    await app.start()
    if settings.phone_page == "on":
        for lp in app.edgeport.listening_points:
            if lp.transport is Transport.WSS:
                host = "localhost" if lp.host in ("0.0.0.0", "::") else lp.host
                print(
                    f"sipgrid: the browser phone is at https://{host}:{lp.port}/phone/", flush=True
                )
    points = ", ".join(str(lp) for lp in app.edgeport.listening_points)
    await until_stopped(
        app.stop,
        f"SIP on {points}",
        lambda: app.edgeport.drain(settings.drain_seconds),
        settings.worker_place(),
    )
