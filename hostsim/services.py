"""Start and stop the real programs the simulator runs: mosquitto and our own processes."""

from __future__ import annotations

import getpass
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

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID

from contracts.errors import MissingComponent
from drivers.mqtt import TlsFiles
from registry.broker import broker_config, write_acl
from registry.keys import _write_private
from registry.pki import Authority

__all__ = ["Process", "ServiceError", "client_certificate", "forecourt_command", "free_port",
           "start_mosquitto", "wait_port"]


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


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto, or run `make setup`)")
    return exe


def start_mosquitto(state_dir: Path, port: int, *, tls_dir: Path | None = None) -> Process:
    """Mosquitto on 127.0.0.1:port; with tls_dir (a registry.pki Authority directory) TLS with client
    certificates, the CRL and the ACL of registry.acl."""
    exe = mosquitto_exe()
    conf = state_dir / "mosquitto.conf"
    if tls_dir is None:
        conf.write_text(broker_config(port))
    else:
        write_acl(tls_dir)
        # mosquitto drops root before it reads its key: run it as whoever owns the 0600 key files
        conf.write_text(broker_config(port, tls_dir=tls_dir, user=getpass.getuser()))
    proc = Process("mosquitto", [exe, "-c", str(conf)], state_dir / "mosquitto.log")
    try:
        wait_port(port, 10, proc)
    except ServiceError:
        proc.stop()
        raise
    return proc


def client_certificate(authority: Authority, name: str, directory: Path, *, stem: str = "") -> TlsFiles:
    """A key made here and its certificate for CN=name from authority, as STEM.key (0600) and STEM.pem
    (stem: name), with the CA as ca.pem, in directory: what enrollment leaves on a device."""
    stem = stem or name
    files = TlsFiles(directory / "ca.pem", directory / f"{stem}.pem", directory / f"{stem}.key")
    if files.key.exists() and files.cert.exists():
        return files                 # made by an earlier run in this state directory (--state-dir)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = CertificateSigningRequestBuilder().subject_name(Name([NameAttribute(NameOID.COMMON_NAME, name)]))
    pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode("ascii")
    issued = authority.issue(pem, name)
    _write_private(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode("ascii"))
    files.cert.write_text(issued.cert_pem)
    if files.ca.resolve() != (authority.directory / "ca.pem").resolve():
        files.ca.write_text(authority.ca_pem)
    return files


def forecourt_command(*args: str) -> list[str]:
    """Run our own CLI with this interpreter, so the simulator works from a venv without activating it."""
    return [sys.executable, "-m", "forecourtcli", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return env
