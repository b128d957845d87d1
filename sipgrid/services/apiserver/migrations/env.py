"""Alembic environment: the connection comes from the caller (services.apiserver.database)."""

from __future__ import annotations

from alembic import context

from sipgrid.services.apiserver.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
