"""The ``sipgrid`` command: run the services, and manage resources through the Connect API."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sipgrid import __version__
from sipgrid.config import ConfigError

if TYPE_CHECKING:
    from sipgrid.services.settings import Settings

CONFIG_DIR = click.option(
    "--config-dir", type=click.Path(path_type=Path), default=Path("config"), show_default=True,
    help="Directory with edgeport.yaml, dispatcher.yaml, location.yaml and resources/.",
)  # fmt: skip
LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Default: LOG_LEVEL, else warning. LOG_FORMAT=json for one JSON object per line.",
)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop (a faster event loop) when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _logging(level: str | None) -> Settings:
    """Logging as --log-level, LOG_LEVEL and LOG_FORMAT say; the environment is checked
    here, before anything starts (a bad variable: one line, exit 2)."""
    from sipgrid.logs import setup
    from sipgrid.services.settings import Settings

    try:
        settings = Settings.load()
    except ConfigError as error:
        click.echo(f"sipgrid: {error}", err=True)
        sys.exit(2)
    setup(level or settings.log_level, settings.log_format)
    return settings


def _workers(settings: Settings) -> None:
    """SIPGRID_WORKERS above 1: this process supervises that many workers, each this same
    command, and ends when they end."""
    if settings.workers > 1 and not settings.worker:
        from sipgrid.services.supervisor import supervise

        sys.exit(supervise(settings, sys.argv[1:]))


def _start(what: str, main: Coroutine[Any, Any, None]) -> None:
    try:
        _run(main)
    except ConfigError as error:
        click.echo(f"sipgrid: {error}", err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"sipgrid: cannot start {what}: {error}", err=True)
        sys.exit(1)


# what `sipgrid serve` runs (services/serve.py has a branch for each)
SERVICES = (
    "edgeport",
    "dispatcher",
    "location",
    "connect",
    "apiserver",
    "requester",
    "registry",
    "rtprelay",
)


@click.group(help="sipgrid: a SIP softswitch, Routr v2 compatible.")
def cli() -> None:
    pass


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@cli.command()
@CONFIG_DIR
@LOG_LEVEL
def run(config_dir: Path, log_level: str | None) -> None:
    """Run every service in one process (the all-in-one wiring)."""
    from sipgrid.services.one.app import run as run_all

    _workers(_logging(log_level))
    _start("sipgrid", run_all(config_dir))


@cli.command()
@click.argument(
    "service",
    type=click.Choice(SERVICES),
)
@CONFIG_DIR
@click.option("--bind-addr", help="gRPC address to listen on (host:port).")
@LOG_LEVEL
def serve(service: str, config_dir: Path, bind_addr: str | None, log_level: str | None) -> None:
    """Run one service (the distributed wiring); services talk gRPC."""
    from sipgrid.services.serve import serve as serve_one

    settings = _logging(log_level)
    if service == "edgeport":  # the one service that can run as workers on one port
        _workers(settings)
    _start(service, serve_one(service, config_dir, bind_addr))


@cli.command()
@click.argument("target")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait.")
def health(target: str, timeout: float) -> None:
    """Exit 0 when TARGET serves: host:port (the gRPC health check) or an http:// URL
    (/healthz, /readyz); 1 otherwise. For container health checks."""
    if target.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(target, timeout=timeout) as reply:
                ok = reply.status == 200
        except OSError as error:
            click.echo(f"sipgrid: {target}: {error}", err=True)
            sys.exit(1)
    else:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                )
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError as error:
            click.echo(f"sipgrid: {target}: {error.code().name}", err=True)
            sys.exit(1)
    click.echo("serving" if ok else "not serving")
    sys.exit(0 if ok else 1)


@cli.command()
@CONFIG_DIR
def check(config_dir: Path) -> None:
    """Check every configuration file in CONFIG_DIR as a start would (edgeport.yaml,
    dispatcher.yaml, location.yaml, resources/, and the environment sipgrid reads):
    one line per problem naming file, field and problem; exit 1 when there is one."""
    from sipgrid.config import load
    from sipgrid.services.connect.resources import load_resources
    from sipgrid.services.connect.tokens import verifier_from
    from sipgrid.services.dispatcher.dispatcher import load_dispatcher
    from sipgrid.services.edgeport.config import load_edgeport
    from sipgrid.services.location.config import LocationConfig, redis_url
    from sipgrid.services.rtprelay.relay import relay_from
    from sipgrid.services.settings import Settings

    failed = 0
    try:
        settings = Settings.load()
    except ConfigError as error:
        click.echo(f"sipgrid: {error}", err=True)
        failed += 1
        settings = Settings.load({})  # the files are still checked, on the defaults
    else:
        click.echo("ok: environment")

    def location(path: Path) -> None:
        redis_url(load(LocationConfig, path), settings.redis_url, str(path))

    steps: list[tuple[str, Callable[[], object]]] = [
        ("edgeport.yaml", lambda: load_edgeport(config_dir / "edgeport.yaml", settings)),
        ("resources/", lambda: load_resources(config_dir / "resources")),
        ("environment (tokens)", lambda: verifier_from(settings)),
        ("environment (rtpengine)", lambda: relay_from(settings)),
    ]
    if (config_dir / "dispatcher.yaml").exists():
        steps.insert(
            1, ("dispatcher.yaml", lambda: load_dispatcher(config_dir / "dispatcher.yaml"))
        )
    if (config_dir / "location.yaml").exists():
        steps.insert(1, ("location.yaml", lambda: location(config_dir / "location.yaml")))
    for name, step in steps:
        try:
            step()
        except ConfigError as error:
            click.echo(f"sipgrid: {error}", err=True)
            failed += 1
        else:
            click.echo(f"ok: {name}")
    sys.exit(1 if failed else 0)


# gRPC's EventEngine (its newer I/O layer, the default in grpcio 1.85) spent 15 to 25 %
# more CPU per message on a stream than the older one it replaces, on either side, and
# the distributed wiring 6 to 17 % more per call or REGISTER (bench/README.md, "gRPC's
# I/O layer"). GRPC_EXPERIMENTS, set by the operator (even empty), wins.
GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def grpc_defaults() -> None:
    """gRPC's own settings for a sipgrid process, before gRPC is first imported (it reads
    them when it starts)."""
    os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)


def main() -> None:
    grpc_defaults()
    from sipgrid.cli_resources import commands

    for command in commands():
        cli.add_command(command)
    cli()


if __name__ == "__main__":
    main()
