"""Start and stop the real programs the simulator runs: mosquitto and our own processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from contracts.errors import MissingComponent
from registry.broker import broker_config

__all__ = ["Process", "ServiceError", "forecourt_command", "free_port", "start_mosquitto", "wait_port"]


class ServiceError(MissingComponent):
    """A service the simulator needs did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{proc.name} exited with {proc.poll()} before listening; see {proc.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path = name, list(argv), log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - open for the child's lifetime
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def start_mosquitto(state_dir: Path, port: int) -> Process:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto, or run `make setup`)")
    conf = state_dir / "mosquitto.conf"
    conf.write_text(broker_config(port))
    proc = Process("mosquitto", [exe, "-c", str(conf)], state_dir / "mosquitto.log")
    wait_port(port, 10, proc)
    return proc


def forecourt_command(*args: str) -> list[str]:
    """Run our own CLI with this interpreter, so the simulator works from a venv without activating it."""
    return [sys.executable, "-m", "forecourtcli", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return env
