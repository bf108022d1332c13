"""The registry's one data layer: SQLite (WAL) by default, PostgreSQL by URL for scale."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError, MissingComponent
from registry.models import Base

__all__ = ["DRIVERS", "database_url", "open_database"]

# The databases the registry runs on (SQLAlchemy driver names): SQLite, and PostgreSQL through psycopg 3.
DRIVERS = ("sqlite", "postgresql", "postgresql+psycopg")

log = logging.getLogger(__name__)

# Columns added after the first release, as (table, column, declaration). create_all() creates missing
# tables but never alters an existing one, so a database from before a column gets it added here. Each
# declaration matches the model's column and is valid on both SQLite and PostgreSQL.
_ADDED = (
    ("transactions", "kind", "VARCHAR(32) NOT NULL DEFAULT 'fleet'"),    # bank sales; all earlier are fleet
    ("transactions", "held", "BOOLEAN NOT NULL DEFAULT FALSE"),         # registry checks; none held before
)
# Text columns made longer, as (table, column, length). Only PostgreSQL enforces a length (SQLite cannot
# alter a column's type, and need not).
_WIDENED = (
    ("transactions", "kind", 32),        # a card program's name; the first registry with kinds had 8
)


# Indexes added after the first release, as (name, table, column); the names are SQLAlchemy's (ix_...).
_INDEXED = (
    ("ix_transactions_auth_id", "transactions", "auth_id"),     # authorize() looks a request id up
)


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _upgrade(engine: Engine) -> None:
    """Add the columns a database made by an older registry lacks, and lengthen those it has too short."""
    with engine.begin() as conn:
        for table, column, declaration in _ADDED:
            if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                log.info("database upgraded", extra={"table": table, "column": column})
        for name, table, column in _INDEXED:
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
        if conn.dialect.name != "postgresql":
            return
        for table, column, length in _WIDENED:
            found = next(c for c in inspect(conn).get_columns(table) if c["name"] == column)
            if (getattr(found["type"], "length", None) or length) < length:
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({length})")
                log.info("database upgraded", extra={"table": table, "column": column, "length": length})


def database_url(url: str, *, key: str = "db") -> URL:
    """The SQLAlchemy URL of a database the registry runs on; ConfigError naming `key` for anything else.

    >>> database_url("postgresql://registry@db/forecourt").drivername
    'postgresql+psycopg'
    >>> database_url("bogus://x")
    Traceback (most recent call last):
        ...
    contracts.errors.ConfigError: database URL must be sqlite:///path or postgresql://... (key=db)
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError("database URL is malformed", key=key) from exc
    if parsed.drivername not in DRIVERS or "\x00" in url:
        raise ConfigError("database URL must be sqlite:///path or postgresql://...", key=key)
    if parsed.drivername == "postgresql":       # SQLAlchemy would pick psycopg2; the project ships psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _private_sqlite(path: Path) -> None:
    """The database holds sealed keys and every sale: its owner's only (SQLite gives -wal/-shm its mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(each, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open database file {path}: {exc.strerror}", key="db") from exc


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Create the engine, the tables and any column an older database lacks.

    `url` is an SQLAlchemy URL (sqlite:///path, postgresql://...). One that names no database the
    registry runs on, or one that cannot be opened, is a ConfigError (its password never shown).
    """
    parsed = database_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        _private_sqlite(Path(parsed.database))
    try:
        engine = create_engine(parsed)
    except ModuleNotFoundError as exc:
        raise MissingComponent(f"no database driver for {parsed.drivername}: {exc}; "
                               "for PostgreSQL install 'psycopg[binary]>=3.1'") from exc
    except (ArgumentError, TypeError, ValueError) as exc:        # e.g. an unknown ?option=
        raise ConfigError("database URL is malformed", key="db") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
        _upgrade(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        why = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()[0][:200]
        raise ConfigError(f"cannot open database {shown}: {why}", key="db") from exc
    return engine, sessionmaker(engine, expire_on_commit=False)
