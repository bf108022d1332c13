"""The terminal's housing: door and tamper switches, the printer's paper-low sensor, status LEDs, a buzzer.

An open door takes the terminal out of service while it is open; a tamper switch (the housing or the PIN
pad's enclosure opened) takes it out of service until a technician has looked and cleared it
(`forecourt provision tamper-clear`), since a skimmer may have been fitted: the latch is kept in the
journal, so a restart does not clear it. Each change is an event to the registry (alarm, warning or
info). A sale already running goes on: the fuel flowing is counted; no new sale starts.

Devices come in built (drivers.gpio.devices): anything with is_active()/on_change() for a switch,
on()/off()/blink() for a lamp, beep() for the buzzer; any of them may be None (not fitted).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from firmware.sale.journal import Journal

__all__ = ["TAMPER_CLEARED", "TAMPER_LATCH", "Cabinet", "Event"]

log = logging.getLogger(__name__)

TAMPER_LATCH = "tamper:latched"         # journal kv: when the tamper switch tripped (UTC, ISO 8601)
TAMPER_CLEARED = "tamper:cleared"       # journal kv: who cleared it and when (provisioning/tamper.py)
DOOR_REPORTED = "door:reported"         # journal kv: the door as last reported to the registry (open, shut)
Event = Callable[[str, str, str], None]  # severity, code, detail


class Cabinet:
    def __init__(self, journal: Journal, event: Event, *, door: Any = None, tamper: Any = None,
                 paper: Any = None, led_ready: Any = None, led_fault: Any = None, buzzer: Any = None) -> None:
        self.journal, self.event = journal, event
        self.door, self.tamper, self.paper = door, tamper, paper
        self.led_ready, self.led_fault, self.buzzer = led_ready, led_fault, buzzer
        self._lamps: str | None = None
        self._latched: bool | None = None      # the tamper latch as last seen (a clearing is reported once)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Report what is found at start, then follow every change."""
        if self.door is not None:
            self.door.on_change(self._on_door)
            opened = self.door.is_active()
            if (self.journal.get_value(DOOR_REPORTED) == "open") != opened or opened:
                self._on_door(opened)    # changed while the terminal was off, or open now
        if self.tamper is not None:
            self.tamper.on_change(self._on_tamper)
            if self.tamper.is_active():
                self._on_tamper(True)
        if self.paper is not None:
            self.paper.on_change(self._on_paper)
            if self.paper.is_active():
                self._on_paper(True)

    # -- what the terminal asks ----------------------------------------------------------------------------
    def out_of_service(self) -> str | None:
        """Why no sale may start now ("tamper", "door_open"), or None."""
        latched = self.journal.get_value(TAMPER_LATCH) is not None
        if self._latched and not latched:
            cleared = self.journal.get_value(TAMPER_CLEARED) or "{}"
            log.warning("tamper latch cleared by a technician")
            self.event("info", "tamper_cleared", "cleared by a technician: " + cleared[:150])
        self._latched = latched
        if latched:
            return "tamper"
        if self.door is not None and self.door.is_active():
            return "door_open"
        return None

    def lamps(self, *, in_service: bool, online: bool) -> None:
        """Ready lit while cards are taken; fault lit out of service, blinking offline or paper low."""
        paper_low = self.paper is not None and self.paper.is_active()
        state = ("out" if not in_service else "degraded" if not online or paper_low else "ready")
        with self._lock:
            if state == self._lamps:
                return
            self._lamps = state
        if self.led_ready is not None:
            (self.led_ready.on if state != "out" else self.led_ready.off)()
        if self.led_fault is not None:
            if state == "out":
                self.led_fault.on()
            elif state == "degraded":
                self.led_fault.blink(1000)
            else:
                self.led_fault.off()

    def close(self) -> None:
        for part in (self.led_ready, self.led_fault, self.buzzer):
            if part is not None:
                part.close()

    # -- changes -------------------------------------------------------------------------------------------
    def _on_door(self, active: bool) -> None:
        self.journal.put(DOOR_REPORTED, "open" if active else "shut")
        if active:
            log.warning("door opened: out of service")
            self.event("alarm", "door_open", "the terminal's door is open: out of service")
            self._beep(3)
        else:
            log.info("door shut")
            self.event("info", "door_closed", "the terminal's door is shut")

    def _on_tamper(self, active: bool) -> None:
        with self._lock:                 # start() and the switch's thread may both see it trip
            if not active or self.journal.get_value(TAMPER_LATCH) is not None:
                return
            at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.journal.put(TAMPER_LATCH, at)
        log.error("tamper switch tripped: out of service until cleared")
        self.event("alarm", "tamper", "tamper switch tripped: out of service until a technician clears it")
        self._beep(10)

    def _on_paper(self, low: bool) -> None:
        if low:
            self.event("warning", "paper_low", "the receipt printer's paper is running out")
        else:
            self.event("info", "paper_ok", "the receipt printer has paper again")

    def _beep(self, times: int) -> None:
        if self.buzzer is not None:
            self.buzzer.beep(times, 150)
