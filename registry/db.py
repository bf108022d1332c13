"""The registry's one data layer: SQLite (WAL) by default, PostgreSQL by URL for scale."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError, MissingComponent
from registry import migrations

__all__ = ["DRIVERS", "database_url", "open_database"]

# The databases the registry runs on (SQLAlchemy driver names): SQLite, and PostgreSQL through psycopg 3.
DRIVERS = ("sqlite", "postgresql", "postgresql+psycopg")
# PostgreSQL advisory lock held while the schema is brought up to date (any number the project owns)
MIGRATION_LOCK = 0x466F7265    # "Fore"


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


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
    """Create the engine and bring the database to the newest schema (registry.migrations, Alembic).

    `url` is an SQLAlchemy URL (sqlite:///path, postgresql://...). One that names no database the
    registry runs on, or one that cannot be opened, is a ConfigError (its password never shown).
    """
    parsed = database_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        _private_sqlite(Path(parsed.database))
    try:
        # hide_parameters: an error's text never carries bound values (card tokens, sealed numbers, voucher
        # digests) into a log; SQLAlchemy shows "[SQL parameters hidden due to hide_parameters=True]"
        engine = create_engine(parsed, hide_parameters=True)
    except ModuleNotFoundError as exc:
        raise MissingComponent(f"no database driver for {parsed.drivername}: {exc}; "
                               "for PostgreSQL install 'psycopg[binary]>=3.1'") from exc
    except (ArgumentError, TypeError, ValueError) as exc:        # e.g. an unknown ?option=
        raise ConfigError("database URL is malformed", key="db") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # a batch migration copies a table others reference (Alembic's batch mode): SQLite's foreign
                # keys are off while it runs (a PRAGMA outside a transaction) and checked after it
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # registry processes starting together (a main one and ingest workers): one migrates,
                    # the others wait for its commit and find nothing to do
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                migrations.upgrade(conn)
            if engine.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
                if broken:
                    raise ConfigError("database has rows whose references are gone", key="db",
                                      rows=len(broken))
    except SQLAlchemyError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        why = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()[0][:200]
        raise ConfigError(f"cannot open database {shown}: {why}", key="db") from exc
    return engine, sessionmaker(engine, expire_on_commit=False)
