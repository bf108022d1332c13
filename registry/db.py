"""The registry's one data layer: SQLite (WAL) by default, PostgreSQL by URL for scale."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
