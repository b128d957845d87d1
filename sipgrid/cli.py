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
        asyncio.run(run_all(config_dir))
    except ConfigError as error:
        typer.echo(f"sipgrid: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        typer.echo(f"sipgrid: cannot start: {error}", err=True)
        raise typer.Exit(code=1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
