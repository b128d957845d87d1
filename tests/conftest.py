"""Fixtures shared by every test package: real databases, never mocks."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get(
    "SIPGRID_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    plain = ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin = psycopg.connect(plain, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {plain} ({str(error).strip().splitlines()[0]}); start it "
            "(pg_ctlcluster <version> main start) or set SIPGRID_TEST_POSTGRES_URL",
            pytrace=False,
        )
    name = f"sipgrid_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sipgrid.db'}"


REDIS_URL = os.environ.get("SIPGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own for one test (1 to 15), emptied after. A test claims
    its database with a key in database 0, so that two runs on one machine (a CI run
    beside `make mutation`, say) never empty each other's."""
    import redis

    claims = redis.Redis.from_url(f"{REDIS_URL}/0", socket_connect_timeout=3)
    try:
        claims.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({error}); start it (redis-server) or set "
            "SIPGRID_TEST_REDIS_URL",
            pytrace=False,
        )
    mine = secrets.token_hex(8)
    for _ in range(600):
        db = 1 + secrets.randbelow(15)
        if claims.set(f"sipgrid-test:claim:{db}", mine, nx=True, ex=600):
            break
        time.sleep(0.1)
    else:
        pytest.fail("no Redis database 1 to 15 was free for a minute", pytrace=False)
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if claims.get(f"sipgrid-test:claim:{db}") == mine.encode():
            claims.delete(f"sipgrid-test:claim:{db}")
        claims.close()


NATS_URL = os.environ.get("SIPGRID_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
def nats_subject() -> Iterator[tuple[str, str]]:
    """The NATS server on this machine, and a subject prefix of this test's own."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(NATS_URL)
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or 4222), 3).close()
    except OSError as error:
        pytest.fail(
            f"NATS is not reachable at {NATS_URL} ({error}); start it (nats-server -a 127.0.0.1 "
            "-p 4222) or set SIPGRID_TEST_NATS_URL",
            pytrace=False,
        )
    yield NATS_URL, f"sipgrid-test-{secrets.token_hex(4)}"
