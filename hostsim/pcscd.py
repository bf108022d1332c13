"""Run a private pcscd whose only reader is a vpcd slot bridged to a VirtualCardServer.

pcscd serves one socket per machine, so start() stops a running one first: a systemd pcscd.socket/service
is stopped and `systemctl start pcscd.socket` on stop() restores it; a stray pcscd is terminated and restarted
from its old command line if that has only plain pcscd options, else it stays stopped (logged as a warning).
Needs root (for the machine pcscd and a network namespace); as non-root everything runs under `sudo -n`.

Why a network namespace: vpcd 3.3 in client mode (DEVICENAME host:port) aborts pcscd (FD_SET(-1)) as soon as
its connection closes, so a removed card crashes it. We therefore run vpcd in server mode (DEVICENAME
/dev/null:PORT, which binds all interfaces) inside a new network namespace whose only interface is its own
loopback, and a bridge thread relays bytes between it and the card server on the host's 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from contracts.errors import CardReaderError
from hostsim.vpcd import CTRL_ATR, quickack, recv_frame, send_frame, set_low_latency

__all__ = ["MachinePcscd", "PcscDaemon"]

log = logging.getLogger(__name__)

CONF_NAME = "forecourt-vpcd"        # also marks a pcscd as ours (stale from a crashed run)
VPCD_PORT = 0x8C7B                 # inside the private namespace, so no clash with anything
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_PIDFILE = Path("/run/pcscd/pcscd.pid")
_CLONE_NEWNET = 0x40000000
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
        if argv[1:3] == ["--foreground", "--config"]:    # exactly how _start_as_root runs it
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


class _Bridge(threading.Thread):
    """Relays vpcd (in pcscd's namespace) to the card server on the host's loopback, card present only."""

    def __init__(self, card_port: int, netns: Path) -> None:
        super().__init__(name="vpcd-bridge", daemon=True)
        self.card_port = card_port
        self.netns = netns
        self.stopping = threading.Event()
        self._libc = ctypes.CDLL(None, use_errno=True)

    def _vpcd_socket(self) -> socket.socket:
        """A socket in pcscd's namespace (a socket keeps the namespace it was created in)."""
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.netns, os.O_RDONLY)
        try:
            if self._libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into pcscd's network namespace failed")
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if self._libc.setns(host, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the host network namespace failed")
        finally:
            os.close(host)
            os.close(target)

    def _probe_card(self) -> socket.socket | None:
        """Connect to the card server; keep the connection only if a card answers with an ATR."""
        try:
            card = socket.create_connection(("127.0.0.1", self.card_port), timeout=1.0)
        except OSError:
            return None
        try:
            set_low_latency(card)
            send_frame(card, bytes([CTRL_ATR]))
            atr = recv_frame(card)
            if atr:
                card.settimeout(None)
                return card
        except OSError:
            pass
        card.close()
        return None

    def run(self) -> None:
        while not self.stopping.is_set():
            card = self._probe_card()
            if card is None:
                self.stopping.wait(0.05)
                continue
            try:
                vpcd = self._vpcd_socket()
                vpcd.settimeout(1.0)
                vpcd.connect(("127.0.0.1", VPCD_PORT))
                vpcd.settimeout(None)
                set_low_latency(vpcd)
            except OSError:
                card.close()
                self.stopping.wait(0.1)
                continue
            try:
                self._relay(card, vpcd)
            finally:
                card.close()
                vpcd.close()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        quickack(src)
                        data = src.recv(65536)
                        if not data:
                            return
                        peer[src].sendall(data)
                    except OSError:
                        return


class PcscDaemon:
    """Our own pcscd with one virtual reader whose card is served on 127.0.0.1:card_port."""

    def __init__(self, state_dir: Path, card_port: int, friendly_name: str = "Forecourt Virtual PCD") -> None:
        self.state_dir = Path(state_dir)
        self.card_port = card_port
        self.friendly_name = friendly_name
        self.reader_name = f"{friendly_name} 00 00"
        self.conf_dir = self.state_dir / "reader.conf.d"
        self.log_path = self.state_dir / "pcscd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._bridge: _Bridge | None = None
        self._machine = MachinePcscd()

    # -- public ----------------------------------------------------------------------------------------
    def start(self, timeout: float = 10) -> Self:
        if self._proc is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._start_as_root()
        else:
            self._start_with_sudo()
        try:
            self._wait_for_reader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._bridge is not None:
            self._bridge.stopping.set()
            self._bridge.join(timeout=5)
            self._bridge = None
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
            f"LIBPATH {VPCD_DRIVER}\n"
            f"CHANNELID {VPCD_PORT}\n")

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
        self._bridge = _Bridge(self.card_port, Path(f"/proc/{self._proc.pid}/ns/net"))
        self._bridge.start()

    def _start_with_sudo(self) -> None:
        if shutil.which("sudo") is None or subprocess.run(
                ["sudo", "-n", "true"], capture_output=True, check=False).returncode != 0:
            raise CardReaderError("pcscd needs root: run as root or allow passwordless sudo (sudo -n failed)",
                                  reader=self.reader_name)
        repo_root = Path(__file__).resolve().parents[1]
        with open(self.log_path, "wb") as log_file:
            self._proc = subprocess.Popen(
                ["sudo", "-n", sys.executable, "-m", "hostsim.pcscd", "--state-dir", str(self.state_dir),
                 "--card-port", str(self.card_port), "--friendly-name", self.friendly_name],
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
            if self.reader_name in seen:
                return
            time.sleep(0.1)
        raise CardReaderError(f"pcscd did not list the reader within {timeout:g} s", reader=self.reader_name,
                              readers=seen, log=self._log_tail())

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
    parser.add_argument("--friendly-name", default="Forecourt Virtual PCD")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    daemon = PcscDaemon(args.state_dir, args.card_port, args.friendly_name)
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
