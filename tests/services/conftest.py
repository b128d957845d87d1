"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from sipgrid.services.apiserver.database import make_engine, migrate
from sipgrid.services.apiserver.store import Cipher, ResourceStore


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated database, SQLite and a fresh PostgreSQL one."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(database: Engine) -> ResourceStore:
    """A migrated resource store, on SQLite and on a fresh PostgreSQL database."""
    return ResourceStore(database, Cipher())
