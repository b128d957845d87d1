"""The database: SQLite under the data directory by default, PostgreSQL (psycopg 3) when
DATABASE_URL says so. Migrations are applied at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

from sipgrid.services.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(given: Settings | None = None, data_dir: Path | None = None) -> str:
    """DATABASE_URL (postgresql:// taken as psycopg 3's), else SQLite in the data directory."""
    env = given or Settings.load()
    url = env.database_url
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    directory = data_dir or env.data_dir
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)  # the database and keys: owner only
    return f"sqlite:///{directory / 'sipgrid.db'}"


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _foreign_keys(connection: object, _record: object) -> None:
            cursor = connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic upgrade)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
