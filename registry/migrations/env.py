"""Alembic environment: runs on the connection registry.migrations.config passes (online mode only)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from registry.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("registry migrations run through registry.migrations.config(connection)")
# render_as_batch: SQLite alters a table by copying it (Alembic batch mode)
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
