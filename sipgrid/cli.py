"""The ``sipgrid`` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from sipgrid import __version__
from sipgrid.config import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sipgrid: a SIP softswitch, Routr v2 compatible.",
)

ConfigDir = Annotated[
    Path,
    typer.Option("--config-dir", help="Directory with edgeport.yaml, dispatcher.yaml, resources/."),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def _run(main: object) -> None:
    """asyncio.run on uvloop (a faster event loop) when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def run(config_dir: ConfigDir = Path("config"), log_level: LogLevel = "warning") -> None:
    """Run every service in one process (the all-in-one wiring)."""
    from services.one.app import run as run_all

    _logging(log_level)
    try:
        _run(run_all(config_dir))
    except ConfigError as error:
        typer.echo(f"sipgrid: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        typer.echo(f"sipgrid: cannot start: {error}", err=True)
        raise typer.Exit(code=1) from None


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="edgeport, dispatcher, location or connect.")],
    config_dir: ConfigDir = Path("config"),
    bind_addr: Annotated[
        str | None, typer.Option("--bind-addr", help="gRPC address to listen on (host:port).")
    ] = None,
    log_level: LogLevel = "warning",
) -> None:
    """Run one service (the distributed wiring); services talk gRPC."""
    from services.serve import SERVICES
    from services.serve import serve as serve_one

    if service not in SERVICES:
        typer.echo(f"sipgrid: unknown service {service!r}; one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(code=2)
    _logging(log_level)
    try:
        _run(serve_one(service, config_dir, bind_addr))
    except ConfigError as error:
        typer.echo(f"sipgrid: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        typer.echo(f"sipgrid: cannot start {service}: {error}", err=True)
        raise typer.Exit(code=1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
