"""Bans in the APIServer's database: written by Connect when a source guesses passwords,
listed and lifted with `sipgrid bans list|remove` where the server runs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from .schema import BanRow


@dataclass(frozen=True, slots=True)
class Ban:
    host: str
    until: float
    reason: str


class DatabaseBans:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def ban(self, host: str, until: float, reason: str) -> None:
        with Session(self._engine) as session, session.begin():
            session.merge(
                BanRow(
                    host=host, until=int(until), reason=reason[:255], created_at=int(time.time())
                )
            )

    def list(self, now: float | None = None) -> list[Ban]:
        """The bans in force (expired ones are deleted on the way)."""
        now = time.time() if now is None else now
        # Read every 2 s by every Connect: a SELECT, and a DELETE only when a ban has
        # ended: no write transaction each time (0.23 ms of CPU against 0.58 on SQLite)
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(BanRow.host, BanRow.until, BanRow.reason).order_by(BanRow.until)
            ).all()
            if any(until <= now for _, until, _ in rows):
                connection.execute(delete(BanRow).where(BanRow.until <= now))
                connection.commit()
        return [Ban(host, float(until), reason) for host, until, reason in rows if until > now]

    def remove(self, host: str) -> bool:
        with Session(self._engine) as session, session.begin():
            row = session.get(BanRow, host)
            if row is not None:
                session.delete(row)
            return row is not None
