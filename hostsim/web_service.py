"""The back office in the simulator: `forecourt web serve` on the registry's database, on a free loopback
port, with the demo sign-ins (registry.web.demo) -- what `make sim` prints for a developer to open."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hostsim.services import Process, ServiceError, child_env, forecourt_command, free_port

__all__ = ["WebApp"]


class WebApp:
    def __init__(self, state: Path, registry_url: str, registry_state: Path, tls_dir: Path) -> None:
        self.state, self.registry_url = state, registry_url
        self.registry_state, self.tls_dir = registry_state, tls_dir
        self.port = 0
        self.logins: list[Any] = []
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> WebApp:
        self.logins = self._seed()
        self.port = free_port()
        self.process = Process("web", forecourt_command(
            "web", "serve", "--db", self.registry_url, "--state-dir", str(self.registry_state),
            "--tls-dir", str(self.tls_dir), "--port", str(self.port), "--stop-list-poll", "1"),
            self.state / "web.log", child_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"the web application exited; see {self.state / 'web.log'}")
            try:
                with urllib.request.urlopen(self.url + "login", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise ServiceError(f"the web application did not answer on {self.url}; see {self.state / 'web.log'}")

    def _seed(self) -> list[Any]:
        from registry.db import open_database
        from registry.keys import load_or_create_keys
        from registry.web.demo import seed
        from registry.web.deps import utcnow

        engine, sessions = open_database(self.registry_url)
        try:
            with sessions() as s:
                keys = load_or_create_keys(self.registry_state / "registry-keys.json")
                logins = list(seed(s, keys, utcnow()))
                logins += _acme(s)
                s.commit()
        finally:
            engine.dispose()
        return logins

    def banner(self) -> str:
        lines = [f"back office: {self.url}  (sign-ins for the simulator only)"]
        lines += [f"  {x.role:<10} {x.login:<30} {x.password}" for x in self.logins]
        return "\n".join(lines)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _acme(s: Any) -> list[Any]:
    """A sign-in for the seed's fleet customer ACME (hostsim/fixtures/seed.toml), whose cards the fleet
    scenarios use: their sales appear in its pages as the scenarios play."""
    from sqlalchemy import select

    from registry.fleet_models import Customer
    from registry.web.auth import add_user
    from registry.web.demo import DemoLogin
    from registry.web.deps import utcnow
    from registry.web_models import WebUser

    acme = s.scalar(select(Customer).where(Customer.name == "ACME Haulage Ltd"))
    if acme is None:
        return []
    login = DemoLogin("fleet", "acme@demo.test", "acme-demo-pass",
                      "ACME Haulage Ltd (the simulator's fleet cards)")
    if s.scalar(select(WebUser.id).where(WebUser.login == login.login)) is None:
        add_user(s, login.login, login.password, role="fleet", actor="demo", now=utcnow(),
                 name="ACME manager", customer_id=acme.id)
    return [login]
