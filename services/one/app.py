"""The all-in-one wiring: every service in one process, called directly (no gRPC on the SIP path)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from services.connect.processor import ConnectProcessor
from services.connect.resources import load_resources
from services.dispatcher.dispatcher import Dispatcher, load_dispatcher
from services.edgeport.config import load_edgeport
from services.edgeport.server import EdgePort
from services.location.config import LocationConfig
from services.location.service import MemoryLocation
from sipgrid.api.types import Processor
from sipgrid.config import ConfigError, load

log = logging.getLogger("sipgrid.one")

CONNECT_PORT = 51904


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's way, and collect young
    objects less often: a proxy allocates many short-lived objects per message."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def is_local_connect(ref: str, addr: str) -> bool:
    """In the all-in-one wiring, the Connect processor's address is served in process."""
    return addr.rsplit(":", 1)[-1] == str(CONNECT_PORT) or ref == "connect-processor"


async def build(config_dir: Path) -> EdgePort:
    edge_config = load_edgeport(config_dir / "edgeport.yaml")
    if (config_dir / "location.yaml").exists():
        location_config = load(LocationConfig, config_dir / "location.yaml")
        if location_config.spec.cache.provider != "memory":
            raise ConfigError(
                f"{config_dir / 'location.yaml'}: field spec.cache.provider: only 'memory' is supported yet"
            )
    location = MemoryLocation()
    connect = ConnectProcessor(load_resources(config_dir / "resources"), location)
    processor: Processor = connect
    dispatcher_path = config_dir / "dispatcher.yaml"
    if dispatcher_path.exists():
        dispatcher_config = load_dispatcher(dispatcher_path)

        def resolve(ref: str, addr: str) -> Processor:
            if is_local_connect(ref, addr):
                return connect
            from services.grpc_clients import GrpcProcessor

            return GrpcProcessor(addr)

        processor = Dispatcher(dispatcher_config, resolve)
    return EdgePort(edge_config, processor)


async def run(config_dir: Path) -> None:
    edgeport = await build(config_dir)
    await edgeport.start()
    tune_gc()
    points = ", ".join(str(lp) for lp in edgeport.listening_points)
    print(f"sipgrid: ready; SIP on {points}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await edgeport.stop()
