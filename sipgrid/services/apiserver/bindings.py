"""Location bindings in the APIServer's database, so that the all-in-one keeps its
registrations across a restart (services/location/persistent.py writes them behind)."""

from __future__ import annotations

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from .schema import BindingRow


class DatabaseBindings:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, now: float) -> list[tuple[str, bytes]]:
        """(aor, route) of every binding still in force; expired ones are deleted."""
        with Session(self._engine) as session, session.begin():
            session.execute(delete(BindingRow).where(BindingRow.expires_at <= now))
            rows = session.scalars(select(BindingRow)).all()
            return [(row.aor, row.route) for row in rows]

    def save(self, bindings: dict[str, list[tuple[str, bytes, float]]]) -> None:
        """Replace what is stored for each AOR given by its (contact, route, expires_at)."""
        with Session(self._engine) as session, session.begin():
            for aor, routes in bindings.items():
                session.execute(delete(BindingRow).where(BindingRow.aor == aor))
                session.add_all(
                    BindingRow(aor=aor, contact=contact, route=route, expires_at=expires_at)
                    for contact, route, expires_at in routes
                )
