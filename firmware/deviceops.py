"""The terminal's side of its own operation: status with a last will, heartbeat, events, remote commands.

STATUS "online" (retained) on every connect; the connection's last will publishes "offline" (last_will()).
HEARTBEAT every minute and on the `heartbeat` command: the software and configuration versions run, the
backlog and the age of its oldest sale, parked sales (the device shadow's reported state). EVENTs wait in
a small outbox while the link is down (the oldest dropped beyond OUTBOX, with a log line) and go on
reconnect; the registry stores each event_id once. COMMANDs are checked on receipt (schema, this terminal,
a name known here, not expired: else a "rejected" result) and carried out between sales only (idle(), from
the terminal's loop, with no sale open in the journal); each command_id is carried out once and
remembered with its encoded result in the journal's key-value table until it has expired, so a command
delivered again is not run twice: its result is sent again (the registry resends a command whose result it
never got).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import HostUnavailable, MessageError
from firmware.hostlink import HostLink, Link
from firmware.sale.journal import Journal
from firmware.updater import RESTART_EXIT

__all__ = ["DONE", "OUTBOX", "RESTART_EXIT", "DeviceOps", "last_will"]

log = logging.getLogger(__name__)

OUTBOX = 200                  # events kept while the link is down, at most
HEARTBEAT_EVERY = 60.0        # seconds
SCREEN_EVERY = 5.0            # seconds between the idle screen's backlog figures
DONE = "command:"             # journal kv prefix: a command carried out -> its expiry and result
SELFTEST_UNAVAILABLE = "selftest is not available on the terminal: run `forecourt provision selftest`"


def _stamp(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def last_will(terminal: str) -> tuple[str, bytes]:
    """The (topic, payload) the broker publishes, retained, when this terminal's connection dies."""
    return (protocol.topic("status", terminal=terminal),
            m.encode({"terminal": terminal, "state": "offline"}, d.STATUS))


class DeviceOps:
    """stop and restart: the terminal's events; a `restart` command sets both (exit with RESTART_EXIT)."""

    def __init__(self, link: Link, journal: Journal, host: HostLink, terminal: str, *,
                 software_version: Callable[[], str], config_version: Callable[[], int],
                 stop: threading.Event, restart: threading.Event, every: float = HEARTBEAT_EVERY,
                 outbox: int = OUTBOX, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.link, self.journal, self.host, self.terminal = link, journal, host, terminal
        self.software_version, self.config_version = software_version, config_version
        self.stop_terminal, self.restart = stop, restart
        self.every, self.outbox_size, self.clock, self.monotonic = every, outbox, clock, monotonic
        self.started = monotonic()
        self.dropped = 0                      # events dropped from a full outbox
        self._outbox: deque[bytes] = deque()
        self._results: deque[bytes] = deque()  # results not yet published (link down)
        self._alarms: set[bytes] = set()       # the outbox's alarms: dropped last when it is full
        self._lock = threading.Lock()
        self._commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self._queued: set[str] = set()
        self._parked = len(journal.parked())
        self._screen: tuple[float, dict[str, Any]] = (float("-inf"), {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prune()
        link.subscribe(protocol.topic("commands", terminal=terminal), self._on_command)
        link.on_state(self._on_link)

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def thread(self) -> threading.Thread | None:
        """The heartbeat thread, once started (watched by the terminal's liveness check)."""
        return self._thread

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.heartbeat()
            except Exception:            # a journal fault must not end the heartbeat for good
                log.exception("heartbeat failed")

    def _on_link(self, up: bool) -> None:
        if not up:
            return
        online = {"terminal": self.terminal, "state": "online", "at": _stamp(self.clock())}
        try:
            self.link.publish(protocol.topic("status", terminal=self.terminal), m.encode(online, d.STATUS),
                              retain=True)
        except HostUnavailable:
            return                       # lost again at once: the next connect says it
        self._flush()
        threading.Thread(target=self.heartbeat, name="heartbeat-now", daemon=True).start()

    # -- heartbeat and events ------------------------------------------------------------------------
    def heartbeat(self) -> bool:
        """Publish what the terminal runs and what waits in it; False when the link is down."""
        backlog = self.host.backlog()
        parked = len(self.journal.parked())
        if parked > self._parked:
            self.event("alarm", "sales_parked", f"{parked - self._parked} more sale(s) refused by the "
                       f"registry and parked for an operator ({parked} in all)")
        self._parked = parked
        doc = {"terminal": self.terminal, "at": _stamp(self.clock()),
               "software_version": self.software_version(), "config_version": self.config_version(),
               "backlog": backlog.count, "oldest_unsent_s": int(backlog.oldest_age),
               "uptime_s": int(self.monotonic() - self.started), "parked": parked}
        try:
            self.link.publish(protocol.topic("heartbeat", terminal=self.terminal), m.encode(doc, d.HEARTBEAT))
        except HostUnavailable:
            return False
        return True

    def event(self, severity: str, code: str, detail: str = "") -> None:
        """Queue an event (info, warning or alarm; a new event_id) and send what waits."""
        event_id = str(uuid.uuid4())
        doc = {"event_id": event_id, "terminal": self.terminal, "at": _stamp(self.clock()),
               "severity": severity, "code": code, "detail": detail[:200]}
        payload = m.encode(doc, d.EVENT)
        with self._lock:
            self._outbox.append(payload)
            if severity == "alarm":
                self._alarms.add(payload)
            while len(self._outbox) > self.outbox_size:
                # the oldest event that is not an alarm goes first: a flood of warnings (a flapping device)
                # never pushes a door or tamper alarm out
                victim = next((p for p in self._outbox if p not in self._alarms), self._outbox[0])
                self._outbox.remove(victim)
                self._alarms.discard(victim)
                self.dropped += 1
                log.warning("event outbox full; an event dropped", extra={"dropped": self.dropped})
        log.log(logging.WARNING if severity != "info" else logging.INFO, "device event",
                extra={"event_id": event_id, "severity": severity, "code": code})
        self._flush()

    def _flush(self) -> None:
        """Send waiting events and command results in order, until the link refuses."""
        for box, name in ((self._outbox, "events"), (self._results, "command_result")):
            while True:
                with self._lock:
                    if not box:
                        break
                    payload = box[0]
                try:
                    self.link.publish(protocol.topic(name, terminal=self.terminal), payload)
                except HostUnavailable:
                    return
                with self._lock:
                    if box and box[0] is payload:
                        box.popleft()
                        self._alarms.discard(payload)

    def pending_events(self) -> int:
        with self._lock:
            return len(self._outbox)

    # -- the idle screen -----------------------------------------------------------------------------
    def screen_fields(self) -> dict[str, Any]:
        """backlog and oldest_min for the idle and offline screens while sales wait (ui.views); at most
        every SCREEN_EVERY seconds from the journal."""
        at, fields = self._screen
        now = self.monotonic()
        if now - at >= SCREEN_EVERY:
            backlog = self.host.backlog()
            fields = ({"backlog": backlog.count, "oldest_min": int(backlog.oldest_age // 60)}
                      if backlog.count else {})
            self._screen = (now, fields)
        return fields

    # -- commands ------------------------------------------------------------------------------------
    def _on_command(self, topic: str, payload: bytes, props: Any) -> None:
        try:
            doc = m.decode(payload, d.COMMAND)
        except MessageError as exc:
            log.warning("malformed command dropped", extra={"error": str(exc)})
            return
        cid = doc["command_id"]
        if doc["terminal"] != self.terminal:
            log.warning("command for another terminal dropped", extra={"command_id": cid})
            return
        with self._lock:
            if cid in self._queued:
                log.info("command delivered again; waiting to be carried out", extra={"command_id": cid})
                return
            done = self.journal.get_value(DONE + cid)
            if done is None:
                self._queued.add(cid)
        if done is not None:
            self._answer_again(cid, done)
            return
        expires = m.parse_timestamp(doc["expires_at"]).replace(tzinfo=dt.UTC).timestamp()
        if doc["name"] not in d.COMMANDS:
            self._answer(doc, "rejected", f"unknown command {doc['name']}", expires)
        elif expires <= self.clock():
            self._answer(doc, "rejected", "expired", expires)
        else:
            log.info("command queued until the terminal is between sales",
                     extra={"command_id": cid, "command": doc["name"]})
            self._commands.put(doc)

    def idle(self) -> bool:
        """Called by the terminal's loop between sales: carry out the commands waiting when no sale is
        open. True when the terminal should stop now (a restart asked)."""
        if self._commands.empty() or self.journal.open_sales():
            return self.restart.is_set()
        while True:
            try:
                doc = self._commands.get_nowait()
            except queue.Empty:
                break
            expires = m.parse_timestamp(doc["expires_at"]).replace(tzinfo=dt.UTC).timestamp()
            if expires <= self.clock():
                self._answer(doc, "rejected", "expired before the terminal was between sales", expires)
                continue
            status, detail = self._run(doc["name"])
            self._answer(doc, status, detail, expires)
            if doc["name"] == "restart":
                self.event("info", "restarting", "remote command")
                self.restart.set()
                self.stop_terminal.set()
                break
        return self.restart.is_set()

    def _run(self, name: str) -> tuple[str, str]:
        if name == "heartbeat":
            return ("done", "") if self.heartbeat() else ("failed", "link down")
        if name == "resend_sales":
            self.host.resend_now()
            return "done", f"{self.host.backlog().count} sale(s) waiting sent again"
        if name == "restart":
            return "done", f"restarting (exit {RESTART_EXIT})"
        return "failed", SELFTEST_UNAVAILABLE         # selftest lives in provisioning, above firmware

    def _answer(self, doc: dict[str, Any], status: str, detail: str, expires: float) -> None:
        """Remember the command as carried out (before anything is published), then send its result."""
        cid = doc["command_id"]
        result = {"command_id": cid, "terminal": self.terminal, "status": status, "detail": detail[:200],
                  "at": _stamp(self.clock())}
        payload = m.encode(result, d.COMMAND_RESULT)
        self.journal.put(DONE + cid, json.dumps({"expires": expires, "status": status,
                                                 "result": payload.decode()}))
        with self._lock:
            self._queued.discard(cid)
            self._results.append(payload)
        log.info("command result", extra={"command_id": cid, "command": doc["name"], "status": status})
        self._flush()

    def _answer_again(self, cid: str, done: str) -> None:
        """A command carried out already, delivered again: the registry resends one whose result it never
        got, so the result kept in the journal goes again (the command is not run twice)."""
        try:
            payload = str(json.loads(done)["result"]).encode()
        except (ValueError, TypeError, KeyError):
            log.info("command delivered again; carried out once, no result kept", extra={"command_id": cid})
            return
        log.info("command delivered again; its result sent again", extra={"command_id": cid})
        with self._lock:
            self._results.append(payload)
        self._flush()

    def _prune(self) -> None:
        """Forget commands a day past their expiry: a copy delivered later is rejected as expired anyway."""
        horizon = self.clock() - 86400
        for key, value in self.journal.values(DONE).items():
            try:
                old = float(json.loads(value)["expires"]) < horizon
            except (ValueError, TypeError, KeyError):
                old = True
            if old:
                self.journal.delete(key)
