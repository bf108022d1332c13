"""Screenshots of the back office's main pages (PNG, 1280x900) in headless Chromium, over a demo database:
`python -m registry.web.screenshots docs/web` (make web-screens).

The pieces are the browser tests' too (tests/web_browser.py): `demo_site` (a migrated SQLite database
seeded by registry.web.demo, with demo sales), `LiveServer` (uvicorn in a thread on a free loopback port)
and `chromium` (Selenium 4 on Debian's /usr/bin/chromium and /usr/bin/chromedriver). Selenium is a
development dependency, imported here only when a browser is started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from registry.db import open_database
from registry.keys import RegistryKeys, load_or_create_keys
from registry.web import demo
from registry.web.app import create_app
from registry.web.settings import WebSettings

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = ["CHROMEDRIVER", "CHROMIUM", "PAGES", "DemoSite", "LiveServer", "chromium", "demo_site", "main",
           "shoot", "sign_in"]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SIZE = (1280, 900)
# (file name, role signed in or None, path): {card} the demo's first fleet card, {station} the first station,
# {start} and {end} the fortnight of the demo's sales, {month} the month of most of them
PAGES = (
    ("login", None, "/login"),
    ("signup", None, "/signup"),
    ("operator-home", "operator", "/"),
    ("sales", "operator", "/sales"),
    ("customers", "operator", "/fleet/customers"),
    ("card", "operator", "/fleet/cards/{card}"),
    ("stations", "operator", "/network/stations"),
    ("terminals", "operator", "/network/terminals"),
    ("prices", "operator", "/network/prices"),
    ("loyalty", "operator", "/loyalty"),
    ("audit", "operator", "/audit"),
    ("report-turnover", "operator", "/reports?start={start}&end={end}&by=station"),
    ("report-by-day", "operator", "/reports?start={start}&end={end}&by=day"),
    ("fleet-cards", "fleet", "/customer"),
    ("fleet-statement", "fleet", "/customer/statement?month={month}"),
    ("cardholder-points", "cardholder", "/me"),
)


@dataclass
class DemoSite:
    app: FastAPI
    engine: Engine
    sessions: sessionmaker[Session]
    keys: RegistryKeys
    logins: dict[str, demo.DemoLogin]
    url: str


def demo_site(state: Path, *, sales: bool = True, now: dt.datetime | None = None) -> DemoSite:
    """A migrated SQLite database in `state` with the registry's keys, seeded by registry.web.demo, and
    the back office on it. Dispose of .engine when done."""
    state.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{state / 'registry.db'}"
    engine, sessions = open_database(url)
    keys = load_or_create_keys(state / "registry-keys.json")
    with sessions() as s:
        logins = demo.seed(s, keys, now or dt.datetime.now(dt.UTC), sales=sales, cheap=True)
    app = create_app(WebSettings(db_url=url, state_dir=state), engine=engine, sessions=sessions, keys=keys)
    return DemoSite(app, engine, sessions, keys, {each.role: each for each in logins}, url)


class LiveServer:
    """uvicorn serving an app in a thread on a free 127.0.0.1 port (a socket bound here, so no port race);
    uvicorn installs no signal handlers off the main thread. A context manager: stopped on exit."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="live-web", daemon=True)

    def start(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the back office did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def chromium(download_dir: Path | None = None, *, size: tuple[int, int] = SIZE,
             lang: str = "en") -> WebDriver:
    """Headless Chromium driven by Debian's chromedriver; downloads go to download_dir."""
    if not CHROMEDRIVER.exists() or not CHROMIUM.exists():
        raise ConfigError("Chromium is not installed: apt-get install chromium chromium-driver "
                          "(scripts/setup.sh does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={size[0]},{size[1]}", f"--lang={lang}", "--hide-scrollbars",
                "--no-first-run", "--disable-extensions", "--password-store=basic"):
        options.add_argument(arg)
    prefs: dict[str, object] = {"intl.accept_languages": lang, "credentials_enable_service": False,
                                "profile.password_manager_enabled": False}
    if download_dir is not None:
        download_dir.mkdir(parents=True, exist_ok=True)
        prefs.update({"download.default_directory": str(download_dir), "download.prompt_for_download": False,
                      "safebrowsing.enabled": False})
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    if download_dir is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(download_dir)})
    # the page's own size, whatever the window's frame takes (headless windows count it in window-size)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})
    driver.set_page_load_timeout(30)
    return driver


def sign_in(driver: WebDriver, base: str, login: str, password: str) -> None:
    """Sign out of whatever session the browser has, then sign in through the form."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "login").send_keys(login)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()


def _fill(path: str, site: DemoSite) -> str:
    """A page path with the demo's first card of the fleet customer, first station and sales' period."""
    from sqlalchemy import select

    from registry.models import Card, Station

    with site.sessions() as s:
        card = s.scalar(select(Card.id).where(Card.token == site.keys.token(demo.FLEET_NUMBERS[0])))
        station = s.scalars(select(Station.id).order_by(Station.id)).first()
    today = dt.date.today()
    return path.format(card=card, station=station, start=today - dt.timedelta(days=14), end=today,
                       month=f"{today - dt.timedelta(days=7):%Y-%m}")


def shoot(site: DemoSite, base: str, driver: WebDriver, out: Path) -> list[Path]:
    """Each page of PAGES as out/<name>.png; a page that answers an error is shot all the same."""
    out.mkdir(parents=True, exist_ok=True)
    written, who = [], ""
    for name, role, path in PAGES:
        if role is None:
            driver.delete_all_cookies()
            who = ""
        elif role != who:
            login = site.logins[role]
            sign_in(driver, base, login.login, login.password)
            who = role
        driver.get(base + _fill(path, site))
        time.sleep(0.2)                         # a chart's SVG and the fonts settle
        target = out / f"{name}.png"
        driver.save_screenshot(str(target))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry.web.screenshots",
                                     description="screenshots of the back office over a demo database")
    parser.add_argument("out", type=Path, help="directory for the PNG files (docs/web)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="forecourt-web-") as tmp:
        site = demo_site(Path(tmp) / "state")
        try:
            with LiveServer(site.app) as live:
                driver = chromium()
                try:
                    for path in shoot(site, live.url, driver, args.out):
                        print(path)
                finally:
                    driver.quit()
        except ConfigError as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 1
        finally:
            site.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
