"""`forecourt provision tamper-clear`: after a technician has inspected the housing, the tamper latch is
cleared, so the terminal takes cards again (firmware.terminal.cabinet).

The latch lives in the terminal's journal (state_dir/journal.db, kv TAMPER_LATCH); clearing it records who
and when under CLEARED, in the same transaction. It is refused while the tamper switch is still tripped
(read over devices.gpio when [gpio] tamper is fitted): the housing must be shut first. A running terminal
reads the latch on each turn of its loop, so it takes cards again within a second or so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from contracts.errors import ConfigError, ForecourtError
from firmware.config import TerminalConfig
from firmware.terminal.cabinet import TAMPER_CLEARED, TAMPER_LATCH

__all__ = ["CLEARED", "Cleared", "TamperTripped", "clear_tamper", "tamper_tripped"]

log = logging.getLogger(__name__)

CLEARED = TAMPER_CLEARED        # journal kv: the last clearing, JSON {"at", "by", "latched_at"}


class TamperTripped(ForecourtError):
    """The tamper switch is still tripped, or cannot be read: nothing is cleared (exit 1)."""


@dataclass(frozen=True)
class Cleared:
    latched_at: str | None      # when the latch was set; None: there was none, nothing was done
    at: str
    by: str

    def lines(self) -> list[str]:
        if self.latched_at is None:
            return ["no tamper latch set: nothing to clear"]
        return [f"tamper latch of {self.latched_at} cleared at {self.at} by {self.by}",
                "a running terminal takes cards again on its next turn; a stopped one when it starts"]


def tamper_tripped(cfg: TerminalConfig) -> bool | None:
    """Whether the tamper switch is tripped now; None when no tamper switch is fitted. TamperTripped when
    it cannot be read (on lgpio a running terminal holds the pin: stop it first)."""
    pins = cfg.gpio
    if not cfg.devices.gpio or not pins.tamper:
        return None
    from drivers.devices import open_device
    from drivers.gpio.devices import Switch

    gpio: Any = None
    try:
        gpio = open_device("gpio", cfg.devices.gpio)
        return Switch(gpio, pins.tamper, name="tamper", active_low="tamper" in pins.active_low,
                      bounce_ms=0).is_active()
    except (ForecourtError, OSError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise TamperTripped("cannot read the tamper switch; nothing cleared (if the terminal runs and holds "
                            "the pin, stop it and try again)", error=reason) from exc
    finally:
        if gpio is not None:
            gpio.close()


def clear_tamper(cfg: TerminalConfig, *, by: str, now: dt.datetime | None = None) -> Cleared:
    """Clear the latch unless the switch is still tripped; the record of who and when goes with it."""
    from firmware.sale.journal import Journal

    name = " ".join(by.split())
    if not name:
        raise ConfigError("--by: the technician's name", key="--by")
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = cfg.state_dir / "journal.db"
    if not path.exists():          # never ran: no latch can be set, and no journal is made here
        return Cleared(None, at, name)
    if tamper_tripped(cfg):
        raise TamperTripped("the tamper switch is still tripped: shut the housing (check it first) and try "
                            "again; nothing cleared", pin=cfg.gpio.tamper)
    journal = Journal(path)
    try:
        latched = journal.get_value(TAMPER_LATCH)
        if latched is None:
            return Cleared(None, at, name)
        record = json.dumps({"at": at, "by": name, "latched_at": latched}, sort_keys=True)
        journal.put_many({CLEARED: record}, deletes=(TAMPER_LATCH,))
    finally:
        journal.close()
    log.warning("tamper latch cleared", extra={"latched_at": latched, "by": name})
    return Cleared(latched, at, name)
