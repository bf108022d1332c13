"""Software releases and their staged rollouts, on the registry (docs/updates.md).

A release is a signed bundle (contracts.bundle) checked when added and kept under the registry's state
directory. A rollout offers it to a first wave of devices (registry.rollout_rules), then to every device,
and halts by itself when too many fail. The command line writes rows only; the running registry publishes
them: each tick sends the retained UPDATE_OFFER of a device chosen ("pending" -> "offered") and clears the
offer of a device a halted rollout leaves ("cancelled"). Devices fetch the bundle by pieces (UPDATE_FETCH,
answered on their update_chunk topic with the request's correlation data) and report (UPDATE_REPORT).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.bundle import BundleError, open_bundle
from contracts.errors import ConfigError, MessageError
from drivers.mqtt.link import Handler
from registry.models import Device, Rollout, RolloutDevice, SoftwareRelease
from registry.rollout_rules import FAILED, decide, first_wave, later
from registry.ticker import Ticker

__all__ = ["RELEASES_DIR", "Releases", "add_release", "halt_rollout", "read_chunk", "record_report",
           "rollout_status", "start_rollout"]

log = logging.getLogger(__name__)

RELEASES_DIR = "releases"
MAX_CHUNK = 256 * 1024


def add_release(s: Session, bundle: Path, state_dir: Path, trusted: Mapping[str, Ed25519PublicKey],
                now: dt.datetime) -> SoftwareRelease:
    """Check a bundle (signature, files) and keep it as a release; ConfigError when it cannot be added."""
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{bundle}: cannot read the bundle ({exc.strerror})", key="bundle") from exc
    try:
        version = open_bundle(data, trusted).version
    except BundleError as exc:
        raise ConfigError(f"{bundle}: {exc}", key="bundle") from exc
    if s.get(SoftwareRelease, version) is not None:
        raise ConfigError(f"release {version} exists already", key="bundle")
    store = state_dir / RELEASES_DIR
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{version}.bundle"
    shutil.copyfile(bundle, path.with_suffix(".part"))
    path.with_suffix(".part").replace(path)
    release = SoftwareRelease(version=version, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                              path=str(path.resolve()), created_at=now)
    s.add(release)
    s.commit()
    return release


def _active_devices(s: Session) -> list[str]:
    return list(s.scalars(select(Device.id).where(Device.status == "active")).all())


def start_rollout(s: Session, version: str, percent: int, halt_at: int, now: dt.datetime) -> Rollout:
    """A rollout of a release: its first wave chosen (published by the running registry)."""
    if not 1 <= percent <= 100 or not 0 <= halt_at <= 100:
        raise ConfigError("--percent must be 1..100 and --halt-at 0..100", key="percent")
    if s.get(SoftwareRelease, version) is None:
        raise ConfigError(f"no release {version}: add its bundle first", key="version")
    running = s.scalar(select(Rollout).where(Rollout.status == "running"))
    if running is not None:
        raise ConfigError(f"rollout {running.id} of {running.version} is still running", key="version")
    rollout = Rollout(version=version, percent=percent, failure_threshold=halt_at, status="running",
                      created_at=now, detail="")
    s.add(rollout)
    s.flush()
    for device in first_wave(_active_devices(s), percent):
        s.add(RolloutDevice(rollout_id=rollout.id, device_id=device, status="pending", updated_at=now,
                            detail=""))
    s.commit()
    return rollout


def halt_rollout(s: Session, rollout_id: int, now: dt.datetime) -> Rollout:
    """An operator stops a running rollout; the running registry clears the offers not taken."""
    rollout = s.get(Rollout, rollout_id)
    if rollout is None or rollout.status != "running":
        raise ConfigError(f"no running rollout {rollout_id}", key="rollout")
    rollout.status, rollout.detail = "halted", f"halted by an operator at {now:%Y-%m-%d %H:%M} UTC"
    s.commit()
    return rollout


def _statuses(s: Session, rollout_id: int) -> dict[str, str]:
    rows = s.scalars(select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id)).all()
    return {r.device_id: r.status for r in rows}


def review(s: Session, rollout: Rollout, now: dt.datetime) -> str:
    """Apply the rules to a running rollout (expand, halt or complete); returns the action taken."""
    if rollout.status != "running":
        s.commit()
        return "wait"
    online = set(s.scalars(select(Device.id).where(Device.online.is_(True))).all())
    decision = decide(_statuses(s, rollout.id), online=online, everyone=_active_devices(s),
                      threshold=rollout.failure_threshold)
    if decision.action == "expand":
        for device in decision.offer:
            s.add(RolloutDevice(rollout_id=rollout.id, device_id=device, status="pending", updated_at=now,
                                detail=""))
    elif decision.action in ("halt", "complete"):
        rollout.status = "halted" if decision.action == "halt" else "completed"
        log.log(logging.WARNING if decision.action == "halt" else logging.INFO, "rollout %s",
                rollout.status, extra={"rollout": rollout.id, "version": rollout.version,
                                       "detail": decision.detail})
    rollout.detail = decision.detail[:200]
    s.commit()
    return decision.action


def record_report(s: Session, report: Mapping[str, Any], terminal: str, now: dt.datetime) -> bool:
    """A device's UPDATE_REPORT applied to its rollout row; False when it changes nothing (a report twice,
    an older one, a rollout or version the device was not offered)."""
    rollout = s.get(Rollout, report["rollout"])
    row = s.get(RolloutDevice, (report["rollout"], terminal))
    if rollout is None or row is None or rollout.version != report["version"]:
        log.warning("update report for no offer of this device ignored",
                    extra={"terminal": terminal, "rollout": report["rollout"]})
        return False
    status = str(report["status"])
    if not later(row.status, status):
        return False
    row.status, row.updated_at, row.detail = status, now, str(report["detail"])[:200]
    device = s.get(Device, terminal)
    if device is not None and status == "installed":
        device.reported_software_version = rollout.version
    review(s, rollout, now)             # one commit: the report and what it decides (a halt) together
    return True


def read_chunk(s: Session, terminal: str, version: str, offset: int, length: int) -> bytes | None:
    """The bytes of a release's bundle from offset (empty past its end); None when this device has no
    live offer of that version."""
    release = s.get(SoftwareRelease, version)
    offered = s.scalar(select(RolloutDevice).join(Rollout).where(
        Rollout.version == version, RolloutDevice.device_id == terminal,
        RolloutDevice.status.not_in(("cancelled",))))
    if release is None or offered is None:
        return None
    with open(release.path, "rb") as f:
        f.seek(offset)
        return f.read(min(length, MAX_CHUNK))


def rollout_status(s: Session) -> list[dict[str, object]]:
    """Each rollout, newest first, with the count of its devices by status."""
    out: list[dict[str, object]] = []
    for r in s.scalars(select(Rollout).order_by(Rollout.id.desc())).all():
        counts: dict[str, int] = {}
        for status in _statuses(s, r.id).values():
            counts[status] = counts.get(status, 0) + 1
        out.append({"id": r.id, "version": r.version, "status": r.status, "percent": r.percent,
                    "halt_at": r.failure_threshold, "devices": counts, "detail": r.detail})
    return out


class Publisher(Protocol):
    """What the link must do: publish (retained offers) and answer requests."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> None: ...

    def reply(self, request_props: Properties | None, payload: bytes) -> None: ...


class Releases:
    """The registry's part for updates: offers, bundle pieces and reports."""

    def __init__(self, sessions: sessionmaker[Session], link: Publisher, *,
                 clock: Callable[[], dt.datetime], period: float = 1.0) -> None:
        self.sessions, self.link, self.clock, self.period = sessions, link, clock, period
        self._ticker = Ticker("registry-releases", self.tick, period, log=log, failed="rollout tick failed")
        self.malformed = 0

    def handlers(self) -> list[tuple[str, Handler]]:
        return [(protocol.subscription("update_fetch"), self._on_fetch),
                (protocol.subscription("update_report"), self._on_report)]

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def tick(self) -> None:
        """Publish the offers chosen and clear those a halted rollout leaves."""
        now = self.clock()
        with self.sessions() as s:
            for r in s.scalars(select(Rollout).where(Rollout.status == "running")).all():
                review(s, r, now)
            rows = s.execute(select(RolloutDevice, Rollout, SoftwareRelease)
                             .join(Rollout, RolloutDevice.rollout_id == Rollout.id)
                             .join(SoftwareRelease, Rollout.version == SoftwareRelease.version)
                             .where(RolloutDevice.status.in_(("pending", "offered", "downloading")))).all()
            for row, rollout, release in rows:
                topic = protocol.topic("update_offer", terminal=row.device_id)
                if rollout.status == "running" and row.status == "pending":
                    offer = {"terminal": row.device_id, "version": release.version, "size": release.size,
                             "sha256": release.sha256, "rollout": rollout.id}
                    self.link.publish(topic, m.encode(offer, d.UPDATE_OFFER), retain=True)
                    row.status, row.updated_at = "offered", now
                    device = s.get(Device, row.device_id)
                    if device is not None:
                        device.desired_software_version = release.version
                elif rollout.status != "running":
                    self.link.publish(topic, b"", retain=True)     # an empty retained message clears it
                    row.status, row.updated_at, row.detail = "cancelled", now, f"rollout {rollout.status}"
                    device = s.get(Device, row.device_id)
                    if device is not None:
                        device.desired_software_version = device.reported_software_version
                s.commit()

    def _checked(self, topic: str, payload: bytes, schema: Mapping[str, m.Check]) -> dict[str, Any] | None:
        try:
            doc = m.decode(payload, schema)
        except MessageError as exc:
            self.malformed += 1
            log.warning("malformed update message dropped", extra={"error": str(exc), "topic": topic})
            return None
        if doc["terminal"] != protocol.terminal_of(topic):
            self.malformed += 1
            log.warning("update message naming another terminal dropped", extra={"topic": topic})
            return None
        return doc

    def _on_fetch(self, topic: str, payload: bytes, props: Properties | None) -> None:
        req = self._checked(topic, payload, d.UPDATE_FETCH)
        if req is None:
            return
        terminal = req["terminal"]
        # the registry may publish anywhere: answer only on the asking device's own chunk topic
        if getattr(props, "ResponseTopic", None) != protocol.topic("update_chunk", terminal=terminal):
            self.malformed += 1
            log.warning("update fetch with a foreign response topic dropped", extra={"terminal": terminal})
            return
        with self.sessions() as s:
            data = read_chunk(s, terminal, req["version"], req["offset"], req["length"])
        if data is None:
            log.warning("update fetch for a version not offered", extra={"terminal": terminal})
            return
        self.link.reply(props, data)

    def _on_report(self, topic: str, payload: bytes, props: Properties | None) -> None:
        report = self._checked(topic, payload, d.UPDATE_REPORT)
        if report is None:
            return
        terminal = report["terminal"]
        with self.sessions() as s:
            if not record_report(s, report, terminal, self.clock()):
                return
            log.info("update report", extra={"terminal": terminal, "status": report["status"],
                                             "version": report["version"]})
            if report["status"] in FAILED:
                # the device will not run it: its desired version is what it runs, and the offer goes
                device = s.get(Device, terminal)
                if device is not None:
                    device.desired_software_version = device.reported_software_version
                    s.commit()
                self.link.publish(protocol.topic("update_offer", terminal=terminal), b"", retain=True)

