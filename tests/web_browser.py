"""Fixtures of the back office's browser tests: `live_web` (the back office served by uvicorn in a thread on
a free 127.0.0.1 port, over a migrated SQLite database in a temporary directory seeded by
registry.web.demo, stopped at the end) and `browser` (headless Chromium driven by Selenium 4 with Debian's
/usr/bin/chromium and /usr/bin/chromedriver, downloads into a temporary directory). Both are module-scoped:
one server and one browser per test module (starting Chromium takes about a second). Import them into a
test module: `from tests.web_browser import browser, live_web  # noqa: F401`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.web.screenshots import CHROMEDRIVER, CHROMIUM, DemoSite, LiveServer, chromium, demo_site

__all__ = ["Browser", "LiveWeb", "browser", "live_web", "wait_for"]


@dataclass
class LiveWeb:
    site: DemoSite
    url: str

    def login(self, role: str) -> tuple[str, str]:
        each = self.site.logins[role]
        return each.login, each.password


@dataclass
class Browser:
    driver: Any                      # selenium.webdriver.Chrome
    downloads: Path
    base: str

    def go(self, path: str) -> None:
        self.driver.get(self.base + path)

    def sign_in(self, login: str, password: str) -> None:
        """Through the sign-in form, after dropping the session the browser had."""
        from registry.web.screenshots import sign_in
        sign_in(self.driver, self.base, login, password)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base)

    def text(self) -> str:
        return str(self.find("body").text)

    def download(self, css: str, suffix: str, timeout: float = 10) -> Path:
        """Click the link `css` and return the file it downloads (a new finished one ending with suffix)."""
        before = set(self.downloads.iterdir())
        self.find(css).click()
        return wait_for(lambda: _new(self.downloads, before, suffix), timeout, f"a {suffix} download")


def _new(folder: Path, before: set[Path], suffix: str) -> Path | None:
    """The new file once Chromium has finished it: it makes the file empty under its final name at the
    start, writes NAME.crdownload beside it and renames that over it at the end."""
    names = list(folder.iterdir())
    if any(p.name.endswith(".crdownload") for p in names):
        return None
    done = [p for p in names if p not in before and p.name.endswith(suffix) and p.stat().st_size > 0]
    return done[0] if done else None


def wait_for(probe: Callable[[], Any], timeout: float = 10, what: str = "the page") -> Any:
    """probe() once it is truthy; AssertionError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWeb]:
    site = demo_site(tmp_path_factory.mktemp("live-web"), sales=True)
    try:
        with LiveServer(site.app) as server:
            yield LiveWeb(site, server.url)
    finally:
        site.engine.dispose()


@pytest.fixture(scope="module")
def browser(live_web: LiveWeb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not CHROMEDRIVER.exists() or not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromedriver or /usr/bin/chromium: scripts/setup.sh installs the Debian "
                    "packages chromium and chromium-driver")
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium(downloads)
    try:
        yield Browser(driver, downloads, live_web.url)
    finally:
        driver.quit()
