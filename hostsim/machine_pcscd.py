"""The machine's own pcscd: pcscd serves one socket per machine, so a private run stops it first and puts it
back afterwards. A systemd pcscd.socket/service is stopped and restarted with `systemctl start`; a stray pcscd
is terminated and restarted from its old command line if that has only plain pcscd options, else it stays
stopped (logged as a warning). A pcscd of a forecourt run that is still alive is never taken.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from contracts.errors import CardReaderError

__all__ = ["CONF_NAME", "MachinePcscd"]

log = logging.getLogger(__name__)

CONF_NAME = "forecourt-vpcd"        # also marks a pcscd as ours (stale from a crashed run)
PCSCD_PIDFILE = Path("/run/pcscd/pcscd.pid")
_PLAIN_OPTIONS = {"-f", "--foreground", "-d", "--debug", "-i", "--info", "-e", "--error", "-C", "--critical",
                  "-a", "--apdu", "-T", "--color", "-x", "--auto-exit", "-S", "--reader-name-no-serial",
                  "-I", "--reader-name-no-interface", "--force-reader-polling"}


def _pids_of(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split() if not _is_zombie(int(p))]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        return []


def _terminate(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class MachinePcscd:
    """The machine's own pcscd: stop it for our run, put it back afterwards."""

    def __init__(self) -> None:
        self.systemd_units: list[str] = []
        self.restart_cmdlines: list[list[str]] = []

    @staticmethod
    def _systemd() -> bool:
        return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None

    def refuse_if_in_use(self) -> None:
        """pcscd is one per machine: never take it from a forecourt run that is still alive."""
        for pid in _pids_of("pcscd"):
            argv = _cmdline(pid)
            parent = _parent(pid)
            if (self._is_ours(argv) and parent > 1 and Path(f"/proc/{parent}").exists()
                    and not _is_zombie(parent)):
                raise CardReaderError("another forecourt pcscd is in use; "
                                      "runs that need pcscd cannot overlap",
                                      pid=pid, parent_pid=parent, parent=" ".join(_cmdline(parent))[:120])

    def stop(self) -> None:
        self.refuse_if_in_use()
        if self._systemd():
            for unit in ("pcscd.socket", "pcscd.service"):
                if subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0:
                    self.systemd_units.append(unit)
            if self.systemd_units:
                log.info("stopping systemd pcscd", extra={"units": self.systemd_units})
                subprocess.run(["systemctl", "stop", "pcscd.socket", "pcscd.service"], check=False)
        pids = set(_pids_of("pcscd"))
        try:
            pids.add(int(PCSCD_PIDFILE.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        for pid in sorted(pids):
            argv = _cmdline(pid)
            if not argv or Path(argv[0]).name != "pcscd":
                continue
            if self._is_ours(argv):
                log.warning("killing a stale forecourt pcscd (its parent is gone)", extra={"pid": pid})
            elif self._is_plain(argv):
                # Drop -f so the restarted daemon detaches itself instead of becoming our child.
                self.restart_cmdlines.append([a for a in argv if a not in ("-f", "--foreground")])
                log.info("stopping running pcscd", extra={"pid": pid})
            else:
                log.warning("stopping running pcscd; its command line is not plain, it will not be restarted",
                            extra={"pid": pid, "argv": " ".join(argv)})
            _terminate(pid)

    @staticmethod
    def _is_ours(argv: list[str]) -> bool:
        if argv[1:3] == ["--foreground", "--config"]:    # exactly how PcscDaemon runs it
            return True
        for i, arg in enumerate(argv[:-1]):
            if arg in ("-c", "--config") and (Path(argv[i + 1]) / CONF_NAME).exists():
                return True
        return any(arg.startswith("/") and CONF_NAME in arg for arg in argv[1:])

    @staticmethod
    def _is_plain(argv: list[str]) -> bool:
        args = iter(argv[1:])
        for arg in args:
            if arg in ("-c", "--config"):
                if not Path(next(args, "")).is_dir():
                    return False
            elif arg not in _PLAIN_OPTIONS:
                return False
        return True

    def restore(self) -> None:
        if self.systemd_units:
            unit = "pcscd.socket" if "pcscd.socket" in self.systemd_units else "pcscd.service"
            subprocess.run(["systemctl", "start", unit], check=False)
            log.info("restored systemd pcscd", extra={"unit": unit})
        for argv in self.restart_cmdlines:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, timeout=10)
            log.info("restarted the machine's pcscd", extra={"argv": " ".join(argv)})
        self.systemd_units, self.restart_cmdlines = [], []
