"""The registry's side of a device's life over MQTT: status (online, last seen), heartbeat (the reported state
of the device shadow), events and alarms, and remote commands with their results.

Every message is checked against its schema, against the device the topic names (a body naming another
terminal is refused: the broker lets a device publish only under its own id, so it is lying or broken) and
against the device's status (only an active device is heard). Commands are rows (DeviceCommand) made by an
operator (`forecourt registry device command`); this module sends the pending ones to connected devices,
marks expired ones and stores each result once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError, HostUnavailable, MessageError
from registry.models import Device, DeviceCommand, DeviceEvent

__all__ = ["COMMAND_TTL", "FleetOps", "Publisher", "handlers", "queue_command", "utcnow"]

log = logging.getLogger(__name__)

COMMAND_TTL = dt.timedelta(minutes=15)       # how long a command waits for its device, by default
OPEN = ("pending", "sent")                   # DeviceCommand.status of a command not yet answered
EXPIRED = "expired"

Handler = Callable[[str, bytes, Any], None]


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None: ...


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def queue_command(session: Session, device_id: str, name: str, *, args: Mapping[str, str] | None = None,
                  ttl: dt.timedelta = COMMAND_TTL, now: dt.datetime, command_id: str) -> DeviceCommand:
    """A command for a device, pending until the registry sends it; ConfigError for an unknown device or
    command, or arguments the wire would refuse."""
    if name not in d.COMMANDS:
        raise ConfigError(f"command must be one of {', '.join(d.COMMANDS)}", key="name")
    device = session.get(Device, device_id)
    if device is None:
        raise ConfigError("no such device", key="device")
    if device.status != "active":
        raise ConfigError(f"device is {device.status}, not active", key="device")
    doc = {"command_id": command_id, "terminal": device_id, "name": name, "expires_at": _stamp(now + ttl),
           "args": dict(args or {})}
    try:
        m.encode(doc, d.COMMAND)
    except MessageError as exc:
        raise ConfigError(f"command is invalid: {exc}", key="args") from exc
    row = DeviceCommand(id=command_id, device_id=device_id, name=name, args=json.dumps(doc["args"]),
                        created_at=now, expires_at=now + ttl, status="pending", detail="", finished_at=None)
    session.add(row)
    session.commit()
    return row


class FleetOps:
    """Handlers of the device topics, and the sender of commands. `clock` gives naive UTC."""

    def __init__(self, sessions: sessionmaker[Session], link: Publisher, *,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.sessions, self.link, self.clock = sessions, link, clock
        self.refused = 0          # messages refused (malformed, another terminal's, a device not active)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def handlers(self, *, share: Callable[[str], str] | None = None) -> list[tuple[str, Handler]]:
        """(subscription, handler) pairs. Status keeps a plain subscription: a shared one gets no retained
        message (MQTT 5.0, 4.8.2), and the retained status is how a registry starting learns who is up.
        share: e.g. protocol.shared, for several registry workers."""
        shared = share or protocol.subscription
        return [(protocol.subscription("status"), self.on_status),
                (shared("heartbeat"), self.on_heartbeat),
                (shared("events"), self.on_event),
                (shared("command_result"), self.on_command_result)]

    # -- receiving ---------------------------------------------------------------------------------------

    def _accept(self, s: Session, topic: str, payload: bytes,
                name: str) -> tuple[dict[str, Any], Device] | None:
        """The decoded message and its active device; None (logged, counted) for anything else."""
        terminal = protocol.terminal_of(topic)
        try:
            doc = m.decode(payload, protocol.BY_NAME[name].schema or {})
        except MessageError as exc:
            self._refuse(name, terminal, str(exc))
            return None
        device = s.get(Device, terminal) if doc["terminal"] == terminal else None
        if doc["terminal"] != terminal:
            self._refuse(name, terminal, "body names another terminal than the topic")
        elif device is None or device.status != "active":
            self._refuse(name, terminal, "device is not active" if device else "unknown device")
        else:
            return doc, device
        return None

    def _refuse(self, name: str, terminal: str | None, why: str) -> None:
        self.refused += 1
        log.warning("device message refused", extra={"topic": name, "terminal": terminal, "reason": why})

    def _seen(self, device: Device, now: dt.datetime) -> None:
        if device.first_seen_at is None:
            device.first_seen_at = now
        device.last_seen_at = now

    def on_status(self, topic: str, payload: bytes, props: Any = None) -> None:
        now = self.clock()
        with self.sessions() as s:
            got = self._accept(s, topic, payload, "status")
            if got is None:
                return
            doc, device = got
            device.online = doc["state"] == "online"
            self._seen(device, now)
            s.commit()
            log.info("device status", extra={"terminal": device.id, "state": doc["state"]})
        if doc["state"] == "online":      # (re)connected: what it was sent may have died with its session;
            self.send_commands(device_id=device.id, resend=True)     # it runs each command_id once

    def on_heartbeat(self, topic: str, payload: bytes, props: Any = None) -> None:
        now = self.clock()
        with self.sessions() as s:
            got = self._accept(s, topic, payload, "heartbeat")
            if got is None:
                return
            doc, device = got
            device.online = True          # a heartbeat is proof of life even if a status was lost
            self._seen(device, now)
            device.reported_software_version = doc["software_version"]
            device.reported_config_version = doc["config_version"]
            device.backlog = doc["backlog"]
            device.backlog_oldest_s = doc["oldest_unsent_s"]
            s.commit()

    def on_event(self, topic: str, payload: bytes, props: Any = None) -> None:
        now = self.clock()
        with self.sessions() as s:
            got = self._accept(s, topic, payload, "events")
            if got is None:
                return
            doc, device = got
            if s.scalar(select(DeviceEvent.id).where(DeviceEvent.event_id == doc["event_id"])) is not None:
                return                                   # sent again (QoS 1, the outbox on reconnect)
            self._seen(device, now)
            s.add(DeviceEvent(event_id=doc["event_id"], device_id=device.id,
                              at=m.parse_timestamp(doc["at"]), received_at=now, severity=doc["severity"],
                              code=doc["code"], detail=doc["detail"]))
            try:
                s.commit()
            except IntegrityError:                       # another worker stored it meanwhile
                s.rollback()
                return
        extra = {"terminal": doc["terminal"], "event_id": doc["event_id"], "code": doc["code"],
                 "detail": doc["detail"]}
        if doc["severity"] == "alarm":
            log.warning("device alarm", extra={**extra, "alarm": doc["code"]})
        else:
            log.info("device event", extra={**extra, "severity": doc["severity"]})

    def on_command_result(self, topic: str, payload: bytes, props: Any = None) -> None:
        now = self.clock()
        with self.sessions() as s:
            got = self._accept(s, topic, payload, "command_result")
            if got is None:
                return
            doc, device = got
            self._seen(device, now)
            row = s.get(DeviceCommand, doc["command_id"])
            if row is None or row.device_id != device.id:
                s.commit()
                self._refuse("command_result", device.id, "result of a command this device was not sent")
                return
            if row.status in OPEN:                       # one result per command: later copies change nothing
                row.status, row.detail, row.finished_at = doc["status"], doc["detail"], now
            s.commit()
        log.info("command result", extra={"terminal": device.id, "command_id": doc["command_id"],
                                          "command": row.name, "status": doc["status"]})

    # -- sending -----------------------------------------------------------------------------------------

    def send_commands(self, *, device_id: str | None = None, resend: bool = False) -> int:
        """Mark expired commands; send pending ones to active, online devices (resend: those sent before
        too, e.g. to a device that just came back). The number sent."""
        now = self.clock()
        with self.sessions() as s:
            for row in s.scalars(select(DeviceCommand).where(DeviceCommand.status.in_(OPEN),
                                                             DeviceCommand.expires_at <= now)):
                row.status, row.finished_at, row.detail = EXPIRED, now, "not answered before it expired"
                log.warning("command expired", extra={"terminal": row.device_id, "command_id": row.id,
                                                      "command": row.name})
            wanted = ("pending", "sent") if resend else ("pending",)
            query = (select(DeviceCommand, Device).join(Device, Device.id == DeviceCommand.device_id)
                     .where(DeviceCommand.status.in_(wanted), Device.status == "active",
                            Device.online.is_(True)).order_by(DeviceCommand.created_at))
            if device_id is not None:
                query = query.where(Device.id == device_id)
            docs = [{"command_id": row.id, "terminal": row.device_id, "name": row.name,
                     "expires_at": _stamp(row.expires_at), "args": json.loads(row.args or "{}")}
                    for row, _ in s.execute(query).all()]
            s.commit()
            sent = 0
            for doc in docs:
                try:
                    self.link.publish(protocol.topic("commands", terminal=doc["terminal"]),
                                      m.encode(doc, d.COMMAND), qos=1)
                except (HostUnavailable, MessageError) as exc:
                    log.warning("command not sent",
                                extra={"command_id": doc["command_id"], "error": str(exc)})
                    continue
                # only a command still pending becomes "sent": a result may already have come back
                s.execute(update(DeviceCommand).where(DeviceCommand.id == doc["command_id"],
                                                      DeviceCommand.status == "pending")
                          .values(status="sent").execution_options(synchronize_session=False))
                s.commit()
                sent += 1
        return sent

    def run(self, stop: threading.Event, every: float = 5.0) -> None:
        """Send and expire commands every `every` seconds until stop (a thread of the registry)."""
        while not stop.wait(every):
            try:
                self.send_commands()
            except Exception:            # a database hiccup must not end command delivery for good
                log.exception("command round failed")

    def start(self, every: float = 5.0) -> None:
        """run() on a thread of its own, until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop, every), name="registry-commands",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def handlers(sessions: sessionmaker[Session], link: Publisher, *,
             share: Callable[[str], str] | None = None) -> list[tuple[str, Handler]]:
    """The device topics' (subscription, handler) pairs for registry/server.py."""
    return FleetOps(sessions, link).handlers(share=share)
