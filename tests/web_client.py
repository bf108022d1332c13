"""Fixtures of the back office's tests: a migrated SQLite database with the registry's keys and the
application on it (web_db), and clients signed in as a new user of a role (signed_in). Import them into a
test module: `from tests.web_client import signed_in, web_db  # noqa: F401`."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys
from registry.web.app import create_app
from registry.web.auth import add_user, cheap_hashes_for_tests
from registry.web.deps import utcnow
from registry.web.settings import WebSettings

__all__ = ["WebClient", "WebDb", "new_user", "signed_in", "web_db"]

cheap_hashes_for_tests()          # argon2id at a low cost: the suite signs in hundreds of times
_TEMPLATE: dict[str, Path] = {}
_LOGINS = itertools.count(1)
PASSWORD = "correct horse battery"


@dataclass
class WebDb:
    app: FastAPI
    sessions: sessionmaker[Session]
    keys: RegistryKeys
    url: str
    state: Path


class WebClient(TestClient):
    csrf: str = ""
    login: str = ""
    user_id: int = 0

    def form(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        """A form POST as a browser sends it: with the session's CSRF token, redirects not followed."""
        return self.post(url, data={"csrf": self.csrf, **(data or {})}, follow_redirects=False, **kw)

    def api(self, method: str, url: str, **kw: Any) -> Any:
        """A JSON API call with the X-CSRF-Token header."""
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.request(method, url, headers=headers, **kw)


def _migrated(tmp: Path) -> Path:
    """A freshly migrated database file, made once per process and copied (migrating costs a second)."""
    if "db" not in _TEMPLATE or not _TEMPLATE["db"].exists():
        base = tmp.parent / "web-template"
        base.mkdir(exist_ok=True)
        path = base / "registry.db"
        engine, _ = open_database(f"sqlite:///{path}")
        engine.dispose()
        _TEMPLATE["db"] = path
    return _TEMPLATE["db"]


@pytest.fixture
def web_db(tmp_path: Path) -> Iterator[WebDb]:
    path = tmp_path / "registry.db"
    shutil.copy(_migrated(tmp_path), path)
    path.chmod(0o600)
    url = f"sqlite:///{path}"
    engine, sessions = open_database(url)
    keys = load_or_create_keys(tmp_path / "registry-keys.json")
    app = create_app(WebSettings(db_url=url, state_dir=tmp_path), engine=engine, sessions=sessions, keys=keys)
    try:
        yield WebDb(app, sessions, keys, url, tmp_path)
    finally:
        engine.dispose()


def new_user(db: WebDb, role: str, **scope: Any) -> str:
    login = f"{role}{next(_LOGINS)}@example.test"
    with db.sessions() as s:
        add_user(s, login, PASSWORD, role=role, actor="test", now=utcnow(), cheap=True, **scope)
        s.commit()
    return login


@pytest.fixture
def signed_in(web_db: WebDb) -> Callable[..., WebClient]:
    def make(role: str, **scope: Any) -> WebClient:
        """A client signed in as a new user of `role` (scope: station_ids=, customer_id=, account_id=)."""
        login = new_user(web_db, role, **scope)
        client = WebClient(web_db.app)
        answer = client.post("/api/session", json={"login": login, "password": PASSWORD})
        if answer.status_code != 200:
            raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text}")
        client.csrf, client.login = answer.json()["csrf"], login
        return client
    return make
