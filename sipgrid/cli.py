"""The ``sipgrid`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sipgrid import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sipgrid: a SIP softswitch, Routr v2 compatible.",
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def run(
    config_dir: Annotated[
        Path, typer.Option("--config-dir", help="Directory with the service configs.")
    ] = Path("config"),
) -> None:
    """Run every service in one process (the all-in-one wiring)."""
    typer.echo(
        "sipgrid run: the SIP services (EdgePort, Dispatcher, Location, Connect) are not built yet; "
        "today sipgrid ships the SIP core library and the gRPC contracts. See README.md.",
        err=True,
    )
    raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
