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
        with Session(self._engine) as session, session.begin():
            session.execute(delete(BanRow).where(BanRow.until <= now))
            rows = session.scalars(select(BanRow).order_by(BanRow.until)).all()
            return [Ban(r.host, float(r.until), r.reason) for r in rows]

    def remove(self, host: str) -> bool:
        with Session(self._engine) as session, session.begin():
            row = session.get(BanRow, host)
            if row is not None:
                session.delete(row)
            return row is not None
