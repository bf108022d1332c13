"""The registry's one data layer: SQLite (WAL) by default, PostgreSQL by URL for scale."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from firmware.errors import MissingComponent
from registry.models import Base

__all__ = ["open_database"]


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Create the engine and the tables; `url` is an SQLAlchemy URL (sqlite:///path, postgresql://...)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":       # SQLAlchemy would pick psycopg2; the project ships psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(parsed)
    except ModuleNotFoundError as exc:
        raise MissingComponent(f"no database driver for {parsed.drivername}: {exc}; "
                               "for PostgreSQL install 'psycopg[binary]>=3.1'") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
