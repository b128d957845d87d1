"""API users: wrong passwords lock a user out for a while; an unknown user costs the same
work as a known one (no usernames found by timing)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import grpc
import pytest

from sipgrid.pb import domains_pb2, domains_pb2_grpc
from sipgrid.services.apiserver import api as api_module
from sipgrid.services.apiserver.api import ApiUsers
from sipgrid.services.apiserver.database import make_engine, migrate
from sipgrid.services.apiserver.server import start_apiserver


def basic(user: str, password: str) -> list[tuple[str, str]]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [("authorization", f"Basic {token}")]


def test_wrong_passwords_lock_the_user_out_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("API_USERNAME", "ops")
    monkeypatch.setenv("API_PASSWORD", "right-one")
    monkeypatch.setattr(api_module, "LOCKOUT_WINDOW", 1.0)

    async def scenario() -> None:
        api = await start_apiserver(
            data_dir=tmp_path / "data", internal_addr="127.0.0.1:0", external_addr="127.0.0.1:0"
        )
        external = f"127.0.0.1:{api.ports[1]}"
        try:
            async with grpc.aio.insecure_channel(external) as channel:
                domains = domains_pb2_grpc.DomainsStub(channel)
                listing = domains_pb2.ListDomainRequest(page_size=10)
                await domains.List(listing, metadata=basic("ops", "right-one"))
                for guess in range(api_module.LOCKOUT_FAILURES):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await domains.List(listing, metadata=basic("ops", f"guess-{guess}"))
                    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError) as locked:  # the right one, too late
                    await domains.List(listing, metadata=basic("ops", "right-one"))
                assert locked.value.code() is grpc.StatusCode.UNAUTHENTICATED
                await asyncio.sleep(1.1)  # the window passes
                await domains.List(listing, metadata=basic("ops", "right-one"))
        finally:
            await api.stop()

    asyncio.run(scenario())


def test_an_unknown_user_costs_a_hash_like_a_known_one(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    users = ApiUsers(engine)
    users.set("ops", "right-one")
    hashed: list[str] = []
    real = ApiUsers._hash

    def counting(password: str, salt: bytes) -> str:
        hashed.append(password)
        return real(password, salt)

    monkeypatch.setattr(ApiUsers, "_hash", staticmethod(counting))
    assert not users.valid("nobody", "x") and len(hashed) == 1
    assert not users.valid("ops", "x") and len(hashed) == 2
    assert users.valid("ops", "right-one")
