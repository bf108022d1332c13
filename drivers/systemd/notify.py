"""The sd_notify protocol, written with the socket module alone (no libsystemd, no third-party package).

Facts used, from sd_notify(3) and sd_watchdog_enabled(3) (systemd 252, Debian bookworm):
- the service manager passes $NOTIFY_SOCKET, an AF_UNIX datagram socket: an absolute path, or an
  abstract name written with a leading '@' (the '@' stands for the NUL byte that starts such a name);
- one datagram carries newline-separated VARIABLE=VALUE assignments: READY=1, RELOADING=1, STOPPING=1,
  STATUS=<one line of text>, WATCHDOG=1 and others;
- with NotifyAccess=main only datagrams from the main process are taken; the kernel stamps each one with
  the sender's process id (the thread group's), so any thread of the main process may send;
- $WATCHDOG_USEC is the watchdog timeout in microseconds; when $WATCHDOG_PID is set and is not this
  process's id the watchdog is meant for another process; the daemon should send WATCHDOG=1 at about half
  the timeout.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

ENV_SOCKET = "NOTIFY_SOCKET"


def _address(value: str) -> str | None:
    """The socket address $NOTIFY_SOCKET names, or None for a form this client does not speak.

    >>> _address("@sd-notify/1")
    '\\x00sd-notify/1'
    >>> _address("vsock:2:1") is None
    True
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None          # relative paths and vsock: addresses (systemd 253+) are not used on the Pi


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=serving") to the service manager.

    True when a datagram was sent; False when no manager listens ($NOTIFY_SOCKET unset or empty: the
    process runs by hand or in tests) or the send failed (logged; a lost notification must not stop the
    terminal, and systemd's watchdog acts on a missing WATCHDOG=1 by itself)."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_SOCKET, "")
    if not value:
        return False
    address = _address(value)
    if address is None:
        log.warning("NOTIFY_SOCKET names no unix socket: not notifying")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": exc.strerror or type(exc).__name__})
        return False
    return True


def _one_line(text: str) -> str:
    """STATUS= holds one line: a newline would start another assignment."""
    return " ".join(text.splitlines())


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify(f"STATUS={_one_line(text)}", environ=environ)


def ready(text: str = "", *, environ: Mapping[str, str] | None = None) -> bool:
    """READY=1 ends the start-up of a Type=notify service (systemctl start returns)."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(text)}" if text else ""), environ=environ)


def watchdog(*, environ: Mapping[str, str] | None = None) -> bool:
    return notify("WATCHDOG=1", environ=environ)


def stopping(text: str = "", *, environ: Mapping[str, str] | None = None) -> bool:
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(text)}" if text else ""), environ=environ)


def reloading(*, environ: Mapping[str, str] | None = None) -> bool:
    """RELOADING=1; MONOTONIC_USEC (CLOCK_MONOTONIC now) is what Type=notify-reload (systemd 253+) also
    wants, and older managers ignore it. Send ready() when the reload is done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", environ=environ)


def watchdog_interval(*, environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds when the manager expects WATCHDOG=1 from this process, else None.

    >>> watchdog_interval(environ={"WATCHDOG_USEC": "30000000"})
    30.0
    >>> watchdog_interval(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    True
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text.isascii() or not usec_text.isdigit() or int(usec_text) == 0:
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text:
        me = os.getpid() if pid is None else pid
        if not pid_text.isascii() or not pid_text.isdigit() or int(pid_text) != me:
            return None        # meant for another process (e.g. a parent that exec'd us without it)
    return int(usec_text) / 1_000_000
