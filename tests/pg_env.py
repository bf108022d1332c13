"""The PostgreSQL a test module runs against: one private cluster per module (tests/pg_server.py).

A module takes it with `pg_url = pg_env.pg_url`; where no PostgreSQL is installed its tests are skipped,
except under CI, which must run them. `database_url` gives the SQLite or the PostgreSQL URL of a test
parametrized over both (params=["sqlite", "postgresql"]). A module taking `sm = pg_env.sm` and
`any_sm = pg_env.any_sm` gets sessions on a fresh SQLite registry, and on SQLite and PostgreSQL in turn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PostgresUnavailable, postgres_server
from sqlalchemy.orm import Session, sessionmaker

from registry.db import open_database

__all__ = ["any_sm", "database_url", "pg_url", "sm"]


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
            yield url
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(str(exc))


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file for param "sqlite", else the module's PostgreSQL (its pg_url fixture)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    found: str = request.getfixturevalue("pg_url")
    return found


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    yield made
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system)])
def any_sm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """SQLite, or the module's PostgreSQL (shared by the module's tests: their keys differ)."""
    engine, made = open_database(database_url(request, tmp_path))
    yield made
    engine.dispose()
