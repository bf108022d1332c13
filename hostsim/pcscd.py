"""Run a private pcscd whose readers are vpcd slots, each bridged to its own VirtualCardServer.

Readers: vsmartcard's vpcd driver (3.3, built with two slots) always gives pcscd two readers, named
"<friendly name> 00 00" (slot 0, the card reader, served on card_port) and "<friendly name> 00 01" (slot 1,
the terminal's SAM reader, served on sam_port when one is given; without it slot 1 stays an empty reader).
Each slot has its own vpcd port (VPCD_PORT + slot) and its own bridge, so a card coming and going in one slot
does not disturb a session open in the other:

    daemon = PcscDaemon(state_dir, cards.port, sam_port=sam.port).start()   # two VirtualCardServers
    card_reader = open_reader("pcsc://" + quote(daemon.reader_name))        # "... 00 00"
    sam_reader = open_reader("pcsc://" + quote(daemon.sam_reader_name))     # "... 00 01"

pcscd serves one socket per machine, so start() stops the machine's pcscd first and stop() puts it back
(hostsim.machine_pcscd). Needs root (for the machine pcscd and a network namespace); as non-root everything
runs under `sudo -n`.

Why a network namespace: vpcd 3.3 in client mode (DEVICENAME host:port) aborts pcscd (FD_SET(-1)) as soon as
its connection closes, so a removed card crashes it. We therefore run vpcd in server mode (DEVICENAME
/dev/null:PORT, which binds all interfaces) inside a new network namespace whose only interface is its own
loopback, and a bridge thread (hostsim.vpcd_bridge) relays bytes between it and the card server on the host's
127.0.0.1.

Since there can be only one, start() first takes a machine-wide lock (MACHINE_LOCK) and holds it until stop():
a second run (another test session, the simulator) waits its turn instead of failing.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from contracts.errors import CardReaderError
from hostsim.machine_pcscd import CONF_NAME, MachinePcscd
from hostsim.vpcd_bridge import VPCD_PORT, VpcdBridge
from hostsim.vpcd_driver import VPCD_DRIVER, reader_driver

__all__ = ["MACHINE_LOCK", "SAM_SLOT", "VPCD_DRIVER", "MachinePcscd", "PcscDaemon", "slot_reader_name"]

MACHINE_LOCK = Path("/tmp/forecourt-pcscd.lock")
LOCK_WAIT_S = float(os.environ.get("FORECOURT_PCSCD_WAIT", "900"))
CARD_SLOT = 0
SAM_SLOT = 1                 # vpcd 3.3 as packaged by Debian has two slots (its vicc_max_slots)
DEFAULT_FRIENDLY_NAME = "Forecourt Virtual PCD"


def slot_reader_name(friendly_name: str, slot: int) -> str:
    """pcscd's name for a slot of a one-device multi-slot driver: "<friendly name> <device 00> <slot>".

    >>> slot_reader_name("Forecourt Virtual PCD", SAM_SLOT)
    'Forecourt Virtual PCD 00 01'
    """
    return f"{friendly_name} 00 {slot:02X}"


def _take_machine_lock(timeout: float) -> int:
    """Open and flock MACHINE_LOCK, waiting up to timeout seconds; the caller closes the fd to release."""
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CardReaderError(f"another forecourt pcscd run held {MACHINE_LOCK} for {timeout:g} s") \
                    from None
            time.sleep(0.2)


class PcscDaemon:
    """Our own pcscd: reader_name's card is served on 127.0.0.1:card_port and, given sam_port,
    sam_reader_name's card (the SAM) on 127.0.0.1:sam_port."""

    def __init__(self, state_dir: Path, card_port: int, sam_port: int | None = None,
                 friendly_name: str = DEFAULT_FRIENDLY_NAME) -> None:
        self.state_dir = Path(state_dir)
        self.card_port = card_port
        self.sam_port = sam_port
        self.friendly_name = friendly_name
        self.reader_name = slot_reader_name(friendly_name, CARD_SLOT)
        self.sam_reader_name: str | None = (
            None if sam_port is None else slot_reader_name(friendly_name, SAM_SLOT))
        self.conf_dir = self.state_dir / "reader.conf.d"
        self.log_path = self.state_dir / "pcscd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._bridges: list[VpcdBridge] = []
        self._machine = MachinePcscd()
        self._lock_fd: int | None = None

    # -- public ----------------------------------------------------------------------------------------
    @property
    def reader_names(self) -> list[str]:
        """The readers with a card server behind them: the card reader, then the SAM reader if any."""
        return [self.reader_name] + ([self.sam_reader_name] if self.sam_reader_name else [])

    def start(self, timeout: float = 10) -> Self:
        if self._proc is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _take_machine_lock(LOCK_WAIT_S)
        try:
            if os.geteuid() == 0:
                self._start_as_root()
            else:
                self._start_with_sudo()
            self._wait_for_reader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for bridge in self._bridges:
            bridge.stopping.set()
        for bridge in self._bridges:
            bridge.join(timeout=5)
        self._bridges = []
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=5)
            self._proc = None
        self._machine.restore()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------------
    def _write_conf(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.conf_dir.iterdir():
            stale.unlink()
        (self.conf_dir / CONF_NAME).write_text(
            f'FRIENDLYNAME "{self.friendly_name}"\n'
            f"DEVICENAME /dev/null:{VPCD_PORT}\n"      # server mode, safe only inside the namespace
            f"LIBPATH {reader_driver(self.state_dir)}\n"
            f"CHANNELID {VPCD_PORT}\n")         # slot N listens on VPCD_PORT + N

    def _start_as_root(self) -> None:
        for tool, package in (("pcscd", "pcscd"), ("unshare", "util-linux"), ("ip", "iproute2")):
            if shutil.which(tool) is None:
                raise CardReaderError(f"{tool} not found: install the Debian package {package}")
        if not VPCD_DRIVER.exists():
            raise CardReaderError("vpcd driver missing: install the Debian package vsmartcard-vpcd",
                                  path=str(VPCD_DRIVER))
        self._machine.refuse_if_in_use()
        self._write_conf()
        try:
            self._machine.stop()
        except BaseException:
            self._machine.restore()
            raise
        with open(self.log_path, "wb") as log_file:
            self._proc = subprocess.Popen(
                ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                 "pcscd", "--foreground", "--config", str(self.conf_dir)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        netns = Path(f"/proc/{self._proc.pid}/ns/net")
        self._bridges = [VpcdBridge(self.card_port, netns, CARD_SLOT)]
        if self.sam_port is not None:
            self._bridges.append(VpcdBridge(self.sam_port, netns, SAM_SLOT))
        for bridge in self._bridges:
            bridge.start()

    def _start_with_sudo(self) -> None:
        if shutil.which("sudo") is None or subprocess.run(
                ["sudo", "-n", "true"], capture_output=True, check=False).returncode != 0:
            raise CardReaderError("pcscd needs root: run as root or allow passwordless sudo (sudo -n failed)",
                                  reader=self.reader_name)
        repo_root = Path(__file__).resolve().parents[1]
        sam = [] if self.sam_port is None else ["--sam-port", str(self.sam_port)]
        with open(self.log_path, "wb") as log_file:
            self._proc = subprocess.Popen(
                ["sudo", "-n", sys.executable, "-m", "hostsim.pcscd", "--state-dir", str(self.state_dir),
                 "--card-port", str(self.card_port), *sam, "--friendly-name", self.friendly_name],
                cwd=repo_root, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)

    def _wait_for_reader(self, timeout: float) -> None:
        try:
            from smartcard.pcsc.PCSCExceptions import BaseSCardException  # type: ignore[import-untyped]
            from smartcard.System import readers  # type: ignore[import-untyped]
        except ImportError as exc:
            raise CardReaderError("pyscard is not installed: pip install pyscard") from exc
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise CardReaderError("pcscd exited during start", reader=self.reader_name,
                                      log=self._log_tail())
            try:
                seen = [str(r) for r in readers()]
            except BaseSCardException:  # no service yet while pcscd is still coming up
                seen = []
            if all(name in seen for name in self.reader_names):
                return
            time.sleep(0.1)
        hint = " (the SAM reader needs a vpcd driver built with two slots)" if (
            self.sam_reader_name and self.reader_name in seen) else ""
        raise CardReaderError(f"pcscd did not list the readers within {timeout:g} s{hint}",
                              reader=", ".join(self.reader_names), readers=seen, log=self._log_tail())

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""


def main(argv: list[str] | None = None) -> int:
    """Run the daemon in the foreground until SIGTERM (used through `sudo -n` by non-root callers)."""
    parser = argparse.ArgumentParser(prog="python -m hostsim.pcscd", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--card-port", type=int, required=True)
    parser.add_argument("--sam-port", type=int, default=None)
    parser.add_argument("--friendly-name", default=DEFAULT_FRIENDLY_NAME)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    daemon = PcscDaemon(args.state_dir, args.card_port, args.sam_port, args.friendly_name)
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    daemon.log_path = daemon.state_dir / "pcscd-root.log"
    try:
        daemon._start_as_root()
    except CardReaderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        daemon.stop()
        return 2
    try:
        done.wait()
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
