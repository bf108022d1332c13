"""The simulator window's status strip: what is up, what waits to be sent, which configuration runs.

read_status() looks at a (started) Simulator the way an operator would: the broker's port answers or refuses,
the registry process lives, the acquirer host serves and is not paused; the sync backlog is read from the
terminal's own files (completed sales the registry has not acknowledged, advices not yet acknowledged by
the acquirer), opened read-only; the configuration is the version the registry published and the terminal
stored, or, before any arrived, a hash of the terminal.toml the simulator wrote (the strip says which).
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.configstore import CONFIG_FILE

__all__ = ["Status", "read_status"]


@dataclass(frozen=True)
class Status:
    broker: bool
    registry: bool
    acquirer: bool
    acquirer_note: str          # "" or why it is down ("paused 12 s")
    terminal: bool
    terminal_pid: int | None
    unsynced_sales: int | None  # None: the file is not there (yet)
    queued_advices: int | None
    config: str                 # "v3 (registry)" or "toml 1a2b3c4d (file hash, no registry config yet)"
    line_noise: bool = False    # the DART line babbles garbage (the window's fault)

    def items(self) -> list[tuple[str, str, bool | None]]:
        """(label, value, ok) for each field of the strip; ok None when it is neither good nor bad."""
        backlog = f"{_n(self.unsynced_sales)} sales, {_n(self.queued_advices)} advices"
        busy = bool(self.unsynced_sales) or bool(self.queued_advices)
        return [("broker", _updown(self.broker), self.broker),
                ("registry", _updown(self.registry), self.registry),
                ("acquirer", _updown(self.acquirer) + (f" ({self.acquirer_note})" * bool(self.acquirer_note)),
                 self.acquirer),
                ("terminal", f"pid {self.terminal_pid}" if self.terminal else "DOWN", self.terminal),
                ("pump line", "NOISY" if self.line_noise else "quiet", not self.line_noise),
                ("backlog", backlog, None if not busy else False),
                ("config", self.config, None)]


def _n(v: int | None) -> str:
    return "?" if v is None else str(v)


def _updown(ok: bool) -> str:
    return "up" if ok else "DOWN"


def _port_open(port: int) -> bool:
    if not port:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _alive(proc: Any) -> bool:
    return proc is not None and proc.poll() is None


def _count(db: Path, sql: str) -> int | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return None


def _config(tdir: Path) -> str:
    """The signed configuration the terminal runs (the file its config store keeps), by version."""
    try:
        doc = json.loads((tdir / CONFIG_FILE).read_text())
        return f"v{int(doc['version'])} signed (registry)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    toml = tdir / "terminal.toml"
    if not toml.exists():
        return "none yet"
    return f"toml {hashlib.sha256(toml.read_bytes()).hexdigest()[:8]} (file hash, no registry config yet)"


def read_status(sim: Any) -> Status:
    """The strip's figures for a Simulator; safe to call before it has started (everything reads down)."""
    tdir = Path(sim.terminal_config).parent
    acquirer = sim.acquirer
    paused = acquirer.paused_for() if hasattr(acquirer, "paused_for") else 0.0
    serving = bool(getattr(acquirer, "serving", False))
    terminal = sim.terminal if _alive(sim.terminal) else None
    return Status(
        broker=_port_open(sim.broker_port), registry=_alive(sim.registry),
        acquirer=serving and not paused, acquirer_note=f"paused {paused:.0f} s" if paused else "",
        terminal=terminal is not None, terminal_pid=None if terminal is None else terminal.pid,
        unsynced_sales=_count(tdir / "journal.db", "SELECT count(*) FROM sales WHERE state = 'completed' "
                              "AND synced = 0 AND parked IS NULL"),
        queued_advices=_count(tdir / "advices.db", "SELECT count(*) FROM advice WHERE acked IS NULL"),
        config=_config(tdir), line_noise=bool(getattr(sim.pump_line, "noise_interval", None)))
