"""The distributed wiring: one service per process, gRPC between them."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipgrid.cli import SERVICES
from sipgrid.config import load

from .grpc_servers import end_streams, start_server
from .settings import Settings

if TYPE_CHECKING:
    from .edgeport.workers import WorkerPlace
    from .registry.registry import Registry

# Each service imports what it runs, in its branch of serve(): a process pays only for
# its own part (the EdgePort's aiohttp, Connect's resources...), and starts sooner.

DEFAULT_BIND = {
    "dispatcher": "0.0.0.0:51901",
    "location": "0.0.0.0:51902",
    "connect": "0.0.0.0:51904",
    "rtprelay": "0.0.0.0:51903",
    "requester": "0.0.0.0:51909",
    "registry": "0.0.0.0:51910",
}


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's way, and collect young
    objects less often: a proxy allocates many short-lived objects per message, and
    each collection walks the objects it tracks."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def until_stopped(
    stop_hook: Callable[[], Awaitable[None]],
    banner: str,
    drain: Callable[[], Awaitable[None]] | None = None,
    worker: WorkerPlace | None = None,
) -> None:
    """Announce readiness, wait for SIGINT or SIGTERM, drain, then stop (a second
    signal stops at once). A worker (SIPGRID_WORKER) says so: its supervisor says
    "ready" once all are up. Every service, and the all-in-one, comes up through here:
    what it allocated to start is set aside for the collector first (``tune_gc``)."""
    tune_gc()
    if worker is not None:
        print(f"sipgrid: worker {worker.index} of {worker.count} up; {banner}", flush=True)
    else:
        print(f"sipgrid: ready; {banner}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if drain is not None:
        stop.clear()
        draining = asyncio.ensure_future(drain())
        again = asyncio.ensure_future(stop.wait())
        await asyncio.wait((draining, again), return_when=asyncio.FIRST_COMPLETED)
        draining.cancel()
        again.cancel()
    await stop_hook()


async def _registry(
    settings: Settings,
) -> tuple[Registry, Callable[[], Awaitable[None]]]:
    """The distributed Registry: trunks from the APIServer (APISERVER_ADDR), REGISTERs
    through the Requester (REQUESTER_ADDR), the Contact of the EdgePort that takes the
    providers' calls (CONTACT_ADDR, host:port), a lease per trunk in Redis (REDIS_URL)
    so that two Registry instances never register one trunk twice."""
    from sipgrid.config import ConfigError

    from .connect.api_resources import ApiResources
    from .registry.registry import RedisLease, Registry
    from .requester.requester import GrpcRequester, target_of

    for name, value in (
        ("APISERVER_ADDR", settings.apiserver_addr),
        ("CONTACT_ADDR", settings.contact_addr),
    ):
        if not value:
            raise ConfigError(f"environment: field {name}: required by the registry")
    resources = ApiResources(settings.apiserver_addr)
    await resources.refresh()
    requester = GrpcRequester(settings.requester_addr)
    edge = settings.contact_addr
    lease = None
    if settings.redis_url:
        from .location.redis_store import redis_client

        lease = RedisLease(redis_client(settings.redis_url))
    registry = Registry(
        resources,
        requester.send,
        lambda transport: target_of(edge, transport),
        lease=lease,
        backoff=settings.registry_backoff,
    )
    tasks = [asyncio.create_task(resources.run()), asyncio.create_task(registry.run())]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await registry.stop()
        await requester.close()

    return registry, stop


async def _metrics(settings: Settings) -> Any:
    """/metrics of this process on METRICS_BIND_ADDR (host:port), when set."""
    bind = settings.metrics_bind_addr
    if not bind:
        return None
    from .metrics import serve_metrics

    return await serve_metrics(bind)


@dataclass
class _Expiring:
    location: Any
    stop: Callable[[], Awaitable[None]]


async def _expiry_events(location: Any, settings: Settings) -> _Expiring | None:
    """endpoint.expired to NATS, when events are on (NATS_URL)."""
    from .events import events_from

    events = events_from(settings)
    if events is None:
        return None
    from .location.expiry import ExpiryEvents

    await events.start()
    watch = ExpiryEvents(location, events)
    await watch.watch_stored()
    task = asyncio.create_task(watch.run())

    async def stop() -> None:
        task.cancel()
        await events.stop()

    return _Expiring(watch, stop)


def count_bindings(location: object) -> None:
    """The sipgrid_bindings gauge, for a Location that can count them cheaply (memory)."""
    count = getattr(location, "binding_count", None)
    if callable(count):
        from .metrics import GAUGES

        GAUGES.add("sipgrid_bindings", "Bindings in Location (not expired)", count)


async def serve(service: str, config_dir: Path, bind_addr: str | None = None) -> None:
    settings = Settings.load()  # a bad variable stops the start here
    refresher: asyncio.Task[None] | None = None
    probing: asyncio.Task[None] | None = None
    guarding: asyncio.Task[None] | None = None
    stoppers: list[Callable[[], Awaitable[None]]] = []
    if service == "edgeport":
        from .edgeport.config import load_edgeport
        from .edgeport.server import EdgePort
        from .grpc_clients import GrpcProcessor

        config = load_edgeport(config_dir / "edgeport.yaml", settings)
        edgeport = EdgePort(
            config, GrpcProcessor(config.spec.processor.addr, direct=True), settings=settings
        )
        await edgeport.start()
        points = ", ".join(str(lp) for lp in edgeport.listening_points)
        seconds = settings.drain_seconds
        # METRICS_BIND_ADDR's page is worker 0's own (its EdgePort page sums every worker)
        page = None if edgeport.worker and edgeport.worker.index else await _metrics(settings)

        async def stop_edgeport() -> None:
            await edgeport.stop()
            if page is not None:
                await page.cleanup()

        await until_stopped(
            stop_edgeport,
            f"edgeport: SIP on {points}, processor at {config.spec.processor.addr}",
            lambda: edgeport.drain(seconds),
            edgeport.worker,
        )
        return
    if service == "apiserver":
        from .apiserver.server import open_apiserver

        api = await open_apiserver(settings, config_dir, internal_addr=bind_addr)
        page = await _metrics(settings)

        async def stop_api() -> None:
            await api.stop()
            if page is not None:
                await page.cleanup()

        await until_stopped(stop_api, "apiserver: gRPC internal and external ports up")
        return
    if service == "dispatcher":
        from .dispatcher.dispatcher import Dispatcher, load_dispatcher
        from .grpc_clients import GrpcProcessor

        dispatcher_config = load_dispatcher(config_dir / "dispatcher.yaml")
        bind = bind_addr or settings.bind_addr or dispatcher_config.spec.bind_addr
        server = await start_server(
            bind, processor=Dispatcher(dispatcher_config, lambda ref, addr: GrpcProcessor(addr))
        )
    elif service == "location":
        from .location.config import LocationConfig, open_location

        path = config_dir / "location.yaml"
        location_config = load(LocationConfig, path) if path.exists() else None
        spec_bind = location_config.spec.bind_addr if location_config else DEFAULT_BIND["location"]
        bind = bind_addr or settings.bind_addr or spec_bind
        location_service = open_location(location_config, settings.redis_url, str(path))
        count_bindings(location_service)
        expiring = await _expiry_events(location_service, settings)
        if expiring is not None:
            location_service = expiring.location
            stoppers.append(expiring.stop)
        server = await start_server(bind, location=location_service)
    elif service == "connect":
        from .connect.auth import Authenticator
        from .connect.processor import ConnectProcessor
        from .connect.resources import load_resources
        from .grpc_clients import GrpcLocation

        bind = bind_addr or settings.bind_addr or DEFAULT_BIND["connect"]
        location = GrpcLocation(settings.location_addr)
        counts = None
        balancer = None
        if settings.redis_url:  # nonce counts and turns shared by every Connect instance
            from .connect.auth import RedisNonceCounts
            from .connect.routing import Balancer, RedisTurns
            from .location.redis_store import redis_client

            client = redis_client(settings.redis_url)
            counts = RedisNonceCounts(client)
            balancer = Balancer(RedisTurns(client))
        auth = Authenticator.from_settings(settings, counts=counts)
        from .connect.tokens import verifier_from

        tokens = verifier_from(settings)  # Routr's CONNECT_VERIFIER_* variables
        guard = None
        if settings.database_url:  # bans in the APIServer's database: shared, and listed
            from .apiserver.bans import DatabaseBans  # by `sipgrid bans` where it points
            from .apiserver.database import database_url, make_engine
            from .connect.guard import Guard, GuardSettings

            guard = Guard(
                GuardSettings.of(settings),
                store=DatabaseBans(make_engine(database_url(settings))),
            )
            guarding = asyncio.create_task(guard.run())
        if settings.apiserver_addr:  # resources from the APIServer's internal port
            from .connect.api_resources import ApiResources

            api_resources = ApiResources(settings.apiserver_addr)
            await api_resources.refresh()
            refresher = asyncio.create_task(api_resources.run())
            connect = ConnectProcessor(
                api_resources.current, location, auth, guard=guard, balancer=balancer, tokens=tokens
            )
        else:  # resources from files
            connect = ConnectProcessor(
                load_resources(config_dir / "resources"),
                location,
                auth,
                guard=guard,
                balancer=balancer,
                tokens=tokens,
            )
        server = await start_server(bind, processor=connect)
        # static peers are probed from a UDP port of Connect's own
        from .connect.probe import PeerProber, probe_sender

        sender = await probe_sender(settings.probe_bind_addr)
        connect.prober = PeerProber(
            connect.resources, sender.request, interval=settings.peer_probe_interval
        )
        probing = asyncio.create_task(connect.prober.run())
        stoppers.append(sender.stop)
    elif service == "requester":
        from .requester.requester import requester_sender

        bind = bind_addr or settings.bind_addr or DEFAULT_BIND["requester"]
        sender = await requester_sender(settings=settings)
        stoppers.append(sender.stop)
        server = await start_server(bind, requester=sender)
    elif service == "rtprelay":
        from .rtprelay.relay import relay_from

        relay = relay_from(settings, required=True)
        assert relay is not None
        bind = bind_addr or settings.bind_addr or DEFAULT_BIND["rtprelay"]
        server = await start_server(bind, processor=relay)

        async def close_relay() -> None:
            relay.client.close()

        stoppers.append(close_relay)
    elif service == "registry":
        registry, registry_stop = await _registry(settings)
        bind = bind_addr or settings.bind_addr or DEFAULT_BIND["registry"]
        server = await start_server(bind, registry=registry)
        stoppers.append(registry_stop)
    else:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")

    metrics = await _metrics(settings)
    if metrics is not None:
        stoppers.append(metrics.cleanup)

    async def stop() -> None:
        end_streams()
        await server.stop(grace=1.0)
        if refresher is not None:
            refresher.cancel()
        for task in (probing, guarding):
            if task is not None:
                task.cancel()
        for stopper in stoppers:
            await stopper()

    await until_stopped(stop, f"{service}: gRPC on {bind}")
