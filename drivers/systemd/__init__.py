"""systemd integration without libsystemd: the sd_notify client and a journald priority formatter."""

from __future__ import annotations

from drivers.systemd.notify import notify, ready, reloading, status, stopping, watchdog, watchdog_interval

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog", "watchdog_interval"]
