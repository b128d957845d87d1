"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sipgrid.services.apiserver.database import make_engine, migrate
from sipgrid.services.apiserver.store import Cipher, ResourceStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[ResourceStore]:
    """A migrated resource store, on SQLite and on a fresh PostgreSQL database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    migrate(engine)
    yield ResourceStore(engine, Cipher())
    engine.dispose()
