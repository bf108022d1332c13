"""firmware.updater against the registry's releases over a real mosquitto: an offer is downloaded by pieces
(resumed after an interruption), checked, staged, installed only between sales, health-checked after the
restart, and kept or rolled back; a bundle altered or signed by a key not trusted is refused."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.bundle import Health, build_bundle
from contracts.signing import key_id
from drivers.mqtt import MqttLink
from firmware.update_slots import FACTORY, Slots, UpdateState
from firmware.updater import Updater, running_version
from hostsim.services import Process, free_port, start_mosquitto
from registry.db import open_database
from registry.models import Device, Rollout, RolloutDevice, SoftwareRelease, Station
from registry.releases import Releases, add_release, start_rollout

pytestmark = pytest.mark.system

KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
TERMINAL = "T-0001"
NOW = dt.datetime(2026, 12, 1, 12, 0)
GOOD = {"health.py": b"raise SystemExit(0)\n", "payload.bin": os.urandom(5000)}
BAD = {"health.py": b"raise SystemExit(3)\n", "payload.bin": os.urandom(5000)}


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@dataclass
class Central:
    port: int
    sessions: sessionmaker[Session]
    releases: Releases
    link: MqttLink
    state: Path

    def release(self, tmp: Path, version: str, files: dict[str, bytes], percent: int = 100) -> int:
        path = tmp / f"{version}.bundle"
        path.write_bytes(build_bundle(version, files, health=Health(("python", "health.py"), 5),
                                      private_key=KEY))
        with self.sessions() as s:
            add_release(s, path, self.state, TRUSTED, NOW)
            rollout = start_rollout(s, version, percent, 20, NOW).id
        self.releases.tick()
        return rollout

    def status(self, rollout: int) -> str:
        with self.sessions() as s:
            row = s.get(RolloutDevice, (rollout, TERMINAL))
            return row.status if row is not None else ""

    def rollout(self, rollout: int) -> str:
        with self.sessions() as s:
            return s.get(Rollout, rollout).status    # type: ignore[union-attr]

    def set_rollout(self, rollout: int, status: str) -> None:
        with self.sessions() as s:
            s.get(Rollout, rollout).status = status    # type: ignore[union-attr]
            s.commit()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    port = free_port()
    broker: Process = start_mosquitto(tmp_path, port)
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as s:
        s.add(Station(id="ST-001", name="Demo"))
        s.flush()
        s.add(Device(id=TERMINAL, station_id="ST-001", pin_key_hex="00" * 16, online=True))
        s.commit()
    link = MqttLink("127.0.0.1", port, "forecourt-registry-test", session_expiry=0)
    releases = Releases(sessions, link, clock=lambda: NOW)
    for sub, handler in releases.handlers():
        link.subscribe(sub, handler)
    link.start()
    assert link.wait_connected(5)
    yield Central(port, sessions, releases, link, tmp_path / "registry")
    link.stop()
    engine.dispose()
    broker.stop()


class Terminal:
    """One run of the terminal's updater (a restart makes a new one on the same state directory)."""

    def __init__(self, central: Central, state: Path, trusted: Any = None, chunk: int = 1024) -> None:
        self.link = MqttLink("127.0.0.1", central.port, f"forecourt-terminal-{TERMINAL}")
        self.alarms: list[tuple[str, str, str]] = []
        self.updater = Updater(state, self.link, TERMINAL, TRUSTED if trusted is None else trusted,
                               chunk=chunk, fetch_timeout=3.0, retry=0.5,
                               event=lambda *a: self.alarms.append(a))
        self.link.start()
        assert self.link.wait_connected(5)

    def start(self, ready: Callable[[], bool] = lambda: True) -> Terminal:
        self.updater.start(ready)
        return self

    def stop(self) -> None:
        self.updater.stop()
        self.link.stop()


def staged(central: Central, state: Path) -> Terminal:
    """A terminal run that has fetched, checked and staged the release offered to it."""
    term = Terminal(central, state).start()
    wait_for(lambda: term.updater.staged)
    return term


def test_an_update_is_fetched_installed_between_sales_and_kept_when_healthy(
        central: Central, tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    rollout = central.release(tmp_path, "1.1.0", GOOD)
    term = staged(central, state)
    assert central.status(rollout) == "downloading"
    assert not term.updater.idle(lambda: False)       # a sale is open: nothing changes
    assert running_version(state) == FACTORY
    assert term.updater.idle(lambda: True)            # installed: restart now
    assert running_version(state) == "1.1.0"
    assert (state / "software" / "1.1.0" / "payload.bin").read_bytes() == GOOD["payload.bin"]
    term.stop()
    after = Terminal(central, state).start()                 # the supervisor started it again
    wait_for(lambda: central.status(rollout) == "installed")
    assert not after.updater.restart_due.is_set()
    assert Slots(state).load().trying is None
    assert central.rollout(rollout) == "completed"
    after.stop()


def test_a_version_marked_but_never_switched_to_is_not_tried(central: Central, tmp_path: Path) -> None:
    """Stopped between writing "trying" and switching `current`: the next start runs no health check of a
    version that never ran, reports nothing and restarts nothing."""
    state = tmp_path / "terminal"
    slots = Slots(state)
    slots.save(UpdateState(trying="1.1.0", previous=FACTORY, rollout=1))
    term = Terminal(central, state).start(ready=lambda: False)
    assert not term.updater.restart_due.is_set()
    assert slots.load().trying is None and slots.load().reports == []
    assert running_version(state) == FACTORY
    term.stop()


def test_old_releases_are_removed_once_a_new_one_is_kept(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    for version in ("1.0.0", "1.1.0", "1.2.0", ".1.3.0.staging"):
        (slots.root / version).mkdir()
        (slots.root / version / "release.json").write_text("{}")
    slots.partial("1.4.0").write_bytes(b"half")
    slots.point_to("1.2.0")
    assert slots.prune(keep={"1.2.0", "1.1.0"}) == [".1.3.0.staging", "1.0.0"]
    assert sorted(p.name for p in slots.root.iterdir()) == ["1.1.0", "1.2.0", "1.4.0.part", "current"]


def test_a_failing_health_check_rolls_back_and_the_rollout_halts(central: Central, tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    rollout = central.release(tmp_path, "1.2.0", BAD)
    term = staged(central, state)
    assert term.updater.idle(lambda: True)
    term.stop()
    tried = Terminal(central, state).start()               # health check: exits 3
    assert tried.updater.restart_due.is_set()
    assert running_version(state) == FACTORY
    time.sleep(0.5)
    assert central.status(rollout) == "downloading"        # the report waits for the next run
    tried.stop()
    assert tried.alarms == []
    back = Terminal(central, state).start()                 # the previous version again, offer ignored
    wait_for(lambda: central.status(rollout) == "rolled_back")
    assert central.rollout(rollout) == "halted"
    [(severity, code, detail)] = back.alarms
    assert (severity, code) == ("alarm", "update_rolled_back")
    assert detail.startswith("version=1.2.0 health check exited 3; back to ")
    time.sleep(1.0)
    assert not back.updater.staged and not back.updater.restart_due.is_set()
    assert Slots(state).load().failed == ["1.2.0"]
    assert not (state / "software" / "1.2.0").exists()      # the failed release's files are gone
    back.stop()


def test_no_broker_or_configuration_within_the_deadline_rolls_back(central: Central, tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    rollout = central.release(tmp_path, "1.3.0", GOOD)
    term = staged(central, state)
    term.updater.idle(lambda: True)
    term.stop()
    started = time.monotonic()
    tried = Terminal(central, state).start(ready=lambda: False)
    wait_for(lambda: tried.updater.restart_due.is_set(), timeout=10)
    assert time.monotonic() - started >= 4.5                  # the release's deadline is 5 s
    assert running_version(state) == FACTORY
    tried.stop()
    back = Terminal(central, state).start()
    wait_for(lambda: central.status(rollout) == "rolled_back")
    back.stop()


def test_a_download_resumes_where_it_stopped(central: Central, tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    offsets: list[int] = []
    spy = MqttLink("127.0.0.1", central.port, "spy")
    spy.subscribe(protocol.subscription("update_fetch"),
                  lambda t, p, _: offsets.append(m.decode(p, d.UPDATE_FETCH)["offset"]))
    spy.start()
    assert spy.wait_connected(5)
    central.release(tmp_path, "1.4.0", GOOD)
    with central.sessions() as s:
        bundle = Path(s.scalars(select(SoftwareRelease.path)).one()).read_bytes()
    Slots(state).partial("1.4.0").write_bytes(bundle[:3000])       # what an earlier run had fetched
    term = staged(central, state)
    assert offsets[0] == 3000 and offsets == sorted(offsets)
    assert len(offsets) == -(-(len(bundle) - 3000) // 1024)
    term.stop()
    spy.stop()


def test_a_torn_partial_download_is_fetched_again_and_installed(central: Central, tmp_path: Path) -> None:
    # a .part damaged by a power cut (bytes not on disk in the order written) fails the digest: the
    # terminal starts the download over instead of refusing the release for good
    state = tmp_path / "terminal"
    rollout = central.release(tmp_path, "1.4.1", GOOD)
    with central.sessions() as s:
        bundle = Path(s.scalars(select(SoftwareRelease.path)).one()).read_bytes()
    torn = bytearray(bundle[:3000])
    torn[1000:2000] = bytes(1000)
    Slots(state).partial("1.4.1").write_bytes(bytes(torn))
    term = staged(central, state)
    assert Slots(state).load().failed == [] and central.status(rollout) == "downloading"
    assert term.updater.idle(lambda: True)
    assert (state / "software" / "1.4.1" / "payload.bin").read_bytes() == GOOD["payload.bin"]
    term.stop()


def test_an_altered_bundle_or_an_untrusted_key_is_refused(central: Central, tmp_path: Path) -> None:
    rollout = central.release(tmp_path, "1.5.0", GOOD)
    term = Terminal(central, tmp_path / "t1", trusted={}).start()
    wait_for(lambda: central.status(rollout) == "refused")
    assert not term.updater.staged and Slots(tmp_path / "t1").load().failed == ["1.5.0"]
    term.stop()
    central.set_rollout(rollout, "completed")
    rollout = central.release(tmp_path, "1.6.0", GOOD)
    with central.sessions() as s:
        path = Path(s.get(SoftwareRelease, "1.6.0").path)      # type: ignore[union-attr]
    raw = bytearray(path.read_bytes())
    raw[-2000] ^= 1
    path.write_bytes(bytes(raw))
    term = Terminal(central, tmp_path / "t2").start()
    wait_for(lambda: central.status(rollout) == "refused")
    assert not (tmp_path / "t2" / "software" / "1.6.0").exists()
    term.stop()


def test_a_staged_update_whose_offer_is_withdrawn_is_not_installed(central: Central, tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    rollout = central.release(tmp_path, "1.7.0", GOOD)
    term = staged(central, state)
    central.set_rollout(rollout, "halted")
    central.releases.tick()                                     # the offer is cleared (empty, retained)
    wait_for(lambda: term.updater.staged is None)
    assert not term.updater.idle(lambda: True)
    assert running_version(state) == FACTORY and central.status(rollout) == "cancelled"
    term.stop()
