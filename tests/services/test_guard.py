"""The ban store may be down (the database restarting): a ban still holds, and is
written when the store is back; the store's own list then governs again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import Engine

from sipgrid.services.apiserver.bans import Ban, DatabaseBans
from sipgrid.services.apiserver.database import make_engine, migrate
from sipgrid.services.connect.guard import Guard, GuardSettings


class Flaky(DatabaseBans):
    """The real database store, unreachable while ``down``."""

    down = False

    def ban(self, host: str, until: float, reason: str) -> None:
        if self.down:
            raise ConnectionError("the database is down")
        super().ban(host, until, reason)

    def list(self, now: float | None = None) -> list[Ban]:
        if self.down:
            raise ConnectionError("the database is down")
        return super().list(now)


def test_a_ban_made_while_the_database_is_down_holds_and_is_stored_later(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sipgrid.db'}")
    migrate(engine)
    store = Flaky(engine)
    store.down = True
    guard = Guard(GuardSettings(failures=2, window=60, ban_for=600), store=store, reload_every=0.01)

    async def scenario() -> None:
        await guard.failed("192.0.2.7", "1001")
        await guard.failed("192.0.2.7", "1001")  # no exception: the ban is kept here
        assert guard.banned("192.0.2.7")
        following = asyncio.create_task(guard.run())
        await asyncio.sleep(0.05)
        assert guard.banned("192.0.2.7")  # a failed reload keeps it
        store.down = False
        # the next reload writes it: waited for, as a loaded machine (CI's workers on two
        # cores) may run the loop's reload later than 50 ms on (a run failed so)
        stored = DatabaseBans(engine)
        for _ in range(500):
            if stored.list():
                break
            await asyncio.sleep(0.01)
        following.cancel()
        assert [b.host for b in stored.list()] == ["192.0.2.7"]
        assert guard.banned("192.0.2.7")

    asyncio.run(scenario())


def test_the_list_of_bans_leaves_out_and_deletes_the_ended_ones(database: Engine) -> None:
    bans = DatabaseBans(database)
    bans.ban("192.0.2.1", 1000, "guessing")
    bans.ban("192.0.2.2", 3000, "guessing")
    assert [b.host for b in bans.list(now=500)] == ["192.0.2.1", "192.0.2.2"]
    assert [(b.host, b.until) for b in bans.list(now=2000)] == [("192.0.2.2", 3000.0)]
    # the ended ban is gone from the table, not only from the answer
    assert [b.host for b in bans.list(now=500)] == ["192.0.2.2"]
