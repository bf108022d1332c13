"""The registry's schema migrations (Alembic), run in code by registry.db: no alembic.ini.

A database made before migrations (no alembic_version table) is stamped at the revision its shape matches
(`legacy_revision`) and then upgraded, so its rows stay where they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

__all__ = ["config", "legacy_revision", "next_revision", "upgrade"]

# The shapes a registry from before migrations left: its first release, with transactions.kind, with held
# sales (today's code when migrations came).
FIRST, KINDS, HELD = "r0001", "r0002", "r0003"

log = logging.getLogger(__name__)
# Alembic tells at INFO which dialect it found on every opening; the registry logs an upgrade itself
logging.getLogger("alembic").setLevel(logging.WARNING)


def config(connection: Connection) -> Config:
    """An Alembic configuration for this package's scripts that runs on `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["connection"] = connection
    return cfg


def legacy_revision(connection: Connection) -> str | None:
    """The revision an unversioned database's tables match; None for one without tables or with a version."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or "transactions" not in tables:
        return None
    columns = {c["name"]: c for c in inspect(connection).get_columns("transactions")}
    if "kind" not in columns:
        return FIRST
    short = (getattr(columns["kind"]["type"], "length", None) or 32) < 32     # the first kinds: 8
    if "held" not in columns or "sale_conflicts" not in tables or short:
        return KINDS
    return HELD


def next_revision(cfg: Config) -> str:
    """The id of a revision after the newest: r0001, r0002, ... (file names mypy can check)."""
    head = ScriptDirectory.from_config(cfg).get_current_head() or "r0000"
    return f"r{int(head.removeprefix('r')) + 1:04d}"


def upgrade(connection: Connection) -> None:
    """Bring the database on `connection` to the newest revision (a legacy one stamped first)."""
    cfg = config(connection)
    found = legacy_revision(connection)
    if found is not None:
        command.stamp(cfg, found)
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(cfg, "head")
    after = MigrationContext.configure(connection).get_current_revision()
    if before is not None and after != before:      # a new database is made, not upgraded
        log.info("database upgraded", extra={"revision": after, "from_revision": before,
                                             "recognised": found or ""})
