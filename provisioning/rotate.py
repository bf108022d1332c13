"""`forecourt provision rotate-cert`: a new device key and its certificate, asked for over the current one.

1. A new P-256 key is made here (device.key.new, 0600) and a CSR for the terminal's id.
2. Connected with the current certificate, the device publishes CERT_REQUEST on its cert/request topic and
   waits for the CERT_REPLY with the same request id (the registry issues, and revokes the old certificate:
   registry.certs). The new certificate is written at once (device.pem.new), checked against the new key,
   the terminal's id, the CA and the clock.
3. The new pair must connect to the broker before anything changes. Then it is renamed to names of its
   own (device-<fingerprint>.key/.pem) and terminal.toml is rewritten to name them: one atomic rename
   switches the terminal from the old pair to the new one. The old pair is deleted afterwards.

An interrupted rotation resumes: a .new pair that connects is taken; a key without a certificate is
discarded and the rotation starts again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError, HostUnavailable, MessageError
from drivers.mqtt.link import TlsFiles
from firmware.config import TerminalConfig
from firmware.keyfile import write_key_file
from provisioning.enroll import write_terminal_toml
from provisioning.identity import CertInfo, check_certificate, create_device_key, load_device_key, make_csr
from provisioning.status import connect, connect_as_device

__all__ = ["NEW_CERT", "NEW_KEY", "RotationRefused", "rotate_certificate"]

NEW_KEY = "device.key.new"
NEW_CERT = "device.pem.new"


class RotationRefused(ConfigError):
    """The registry refused the new certificate (reason: its text); exit 2."""


def _files(cfg: TerminalConfig, key: str, cert: str) -> TlsFiles:
    state = cfg.state_dir
    return TlsFiles(state / cfg.mqtt.ca, state / cert, state / key)


def _ask(cfg: TerminalConfig, csr_pem: str, timeout: float) -> str:
    """CERT_REQUEST over the current certificate; the issued certificate's PEM, or RotationRefused."""
    tid = cfg.terminal.id
    request_id = str(uuid.uuid4())
    replies: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_reply(topic: str, payload: bytes, props: object) -> None:
        try:
            reply = m.decode(payload, d.CERT_REPLY)
        except MessageError:
            return
        if reply["request_id"] == request_id:
            replies.put(reply)

    link = connect_as_device(cfg, client="rotate", timeout=timeout)
    try:
        link.subscribe(protocol.topic("cert_reply", terminal=tid), on_reply)
        request = {"request_id": request_id, "terminal": tid, "csr_pem": csr_pem}
        link.publish(protocol.topic("cert_request", terminal=tid), m.encode(request, d.CERT_REQUEST))
        try:
            reply = replies.get(timeout=timeout)
        except queue.Empty:
            raise HostUnavailable(f"no certificate from the registry within {timeout:g} s; the current "
                                  "certificate stays in use", terminal=tid) from None
    finally:
        link.stop()
    if reply["status"] != "issued" or not reply.get("certificate_pem"):
        raise RotationRefused(f"the registry refused the new certificate: {reply['reason'] or 'no reason'}; "
                              "the current certificate stays in use", terminal=tid)
    return str(reply["certificate_pem"])


def _pending_pair(cfg: TerminalConfig, now: dt.datetime) -> CertInfo | None:
    """A .new pair left by an interrupted rotation, checked; None (and a lone key discarded) otherwise."""
    state = cfg.state_dir
    if not (state / NEW_KEY).exists():
        return None
    if not (state / NEW_CERT).exists():
        (state / NEW_KEY).unlink()
        return None
    key = load_device_key(state / NEW_KEY)
    return check_certificate((state / NEW_CERT).read_text(), (state / cfg.mqtt.ca).read_text(), key,
                             common_name=cfg.terminal.id, now=now)


def rotate_certificate(cfg: TerminalConfig, *, timeout: float = 10.0,
                       clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> CertInfo:
    """Rotate the device's key and certificate; returns the new certificate's info."""
    if not cfg.mqtt.tls:
        raise ConfigError("rotate-cert needs a terminal provisioned with TLS ([mqtt] tls = true)",
                          key="mqtt.tls")
    state = cfg.state_dir
    info = _pending_pair(cfg, clock())
    if info is None:
        key = create_device_key(state / NEW_KEY)
        cert_pem = _ask(cfg, make_csr(key, cfg.terminal.id), timeout)
        info = check_certificate(cert_pem, (state / cfg.mqtt.ca).read_text(), key,
                                 common_name=cfg.terminal.id, now=clock())
        write_key_file(state / NEW_CERT, cert_pem)
    # the new pair must reach the broker before the terminal is switched to it
    mqtt = cfg.mqtt
    connect(mqtt.host, mqtt.port, f"forecourt-rotate-{cfg.terminal.id}", tls=_files(cfg, NEW_KEY, NEW_CERT),
            timeout=timeout, identity="new device").stop()
    stem = f"device-{info.fingerprint[:16]}"
    (state / NEW_KEY).replace(state / f"{stem}.key")
    (state / NEW_CERT).replace(state / f"{stem}.pem")
    old = {state / mqtt.key, state / mqtt.cert} - {state / f"{stem}.key", state / f"{stem}.pem"}
    write_terminal_toml(Path(cfg.source), mqtt={"key": f"{stem}.key", "cert": f"{stem}.pem"})
    for path in old:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return info
