"""The broker with TLS, client certificates, the CRL and the ACL made from contracts.protocol, shown by the
broker's own answers (a real mosquitto 2.0.x on a free port).

What mosquitto 2.0.11 answers (found here, asserted below):
- a QoS 1 PUBLISH the ACL denies gets PUBACK 0x87 Not authorized (MQTT 5.0, 3.4.2.1); the client stays
  connected and nobody receives the message;
- a SUBSCRIBE is always granted by its acl_file (src/security_default.c returns success for subscribe
  checks: "FIXME - implement ACL subscription strings"); the read ACL is applied to each message when it
  is delivered, so a subscription to another terminal's topics gets a SUBACK and never a message;
- no client certificate, one from another CA, or one in the CRL: the TLS handshake is refused with an alert;
- the CRL is read at start and on SIGHUP (with the certificates), not when crl.pem changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts import protocol
from contracts.errors import ConfigError
from drivers.mqtt import MqttLink, TlsFiles
from hostsim.scenarios_central import GRANTED_QOS1, NOT_AUTHORIZED, Probe, refusal
from hostsim.services import (
    Process,
    ServiceError,
    client_certificate,
    free_port,
    mosquitto_exe,
    start_mosquitto,
)
from registry.pki import Authority

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(), reason="no mosquitto")

TERMINAL_SENDS = [t.name for t in protocol.TABLE if t.sender == protocol.TERMINAL]
DELIVERED = (0x00, 0x10)       # Success, No matching subscribers (MQTT 5.0, 3.4.2.1)
REGISTRY_SENDS = [t.name for t in protocol.TABLE
                  if t.sender == protocol.REGISTRY and "{terminal}" in t.pattern]


@dataclass
class Broker:
    port: int
    authority: Authority
    directory: Path
    proc: Process

    def files(self, name: str) -> TlsFiles:
        return TlsFiles(self.authority.directory / "ca.pem", self.directory / f"{name}.pem",
                        self.directory / f"{name}.key")

    def service(self, name: str) -> TlsFiles:
        d = self.authority.directory
        return TlsFiles(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")

    def restart(self) -> None:
        self.proc.stop()
        self.proc = start_mosquitto(self.directory, self.port, tls_dir=self.authority.directory)


def start(tmp: Path) -> Broker:
    mosquitto_exe()
    authority = Authority.create(tmp / "pki")
    for name in ("T-A", "T-B", "T-C"):
        client_certificate(authority, name, tmp)
    port = free_port()
    return Broker(port, authority, tmp, start_mosquitto(tmp, port, tls_dir=authority.directory))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.proc.stop()


@pytest.fixture
def probes(broker: Broker) -> Iterator[dict[str, Probe]]:
    witness = "forecourt-registry-" + uuid.uuid4().hex[:6]
    made = {"registry": Probe(broker.port, broker.service("registry"), witness),
            "A": Probe(broker.port, broker.files("T-A")), "B": Probe(broker.port, broker.files("T-B"))}
    try:
        yield made
    finally:
        for p in made.values():
            p.close()


def settle(*expected: tuple[Probe, int], seconds: float = 0.5) -> None:
    """Wait until each probe holds the messages it should (at most 10 s), then a little longer: a message
    that must never arrive would have arrived by then."""
    deadline = time.monotonic() + 10
    while any(len(p.messages) < n for p, n in expected) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)


def test_registry_reads_every_terminal_through_shared_subscriptions_and_answers(
        probes: dict[str, Probe]) -> None:
    registry, a = probes["registry"], probes["A"]
    for name in TERMINAL_SENDS:
        assert registry.subscribe(protocol.shared(name)) == GRANTED_QOS1
    assert a.subscribe(protocol.topic("terminal_inbox", terminal="T-A")) == GRANTED_QOS1
    for name in TERMINAL_SENDS:
        assert a.publish(protocol.topic(name, terminal="T-A"), name.encode()) == 0x00, name
    for name in REGISTRY_SENDS:
        assert registry.publish(protocol.topic(name, terminal="T-A"), b"from registry") in DELIVERED, name
    settle((registry, len(TERMINAL_SENDS)), (a, 1))
    assert sorted(p for _, p in registry.messages) == sorted(n.encode() for n in TERMINAL_SENDS)
    assert a.messages == [(protocol.topic("terminal_inbox", terminal="T-A"), b"from registry")]


def test_a_terminal_cannot_publish_under_another_terminals_id(probes: dict[str, Probe]) -> None:
    registry, a = probes["registry"], probes["A"]
    assert registry.subscribe("forecourt/v1/#") == GRANTED_QOS1
    for name in TERMINAL_SENDS:              # sales, auth, status, heartbeat, events, results ... as T-B
        assert a.publish(protocol.topic(name, terminal="T-B"), b"forged") == NOT_AUTHORIZED, name
    assert a.is_connected                    # refused message by message, not disconnected
    settle()
    assert registry.messages == []


def test_a_terminal_cannot_write_what_the_registry_sends_even_its_own(probes: dict[str, Probe]) -> None:
    a, b = probes["A"], probes["B"]
    assert b.subscribe("forecourt/v1/terminal/T-B/#") == GRANTED_QOS1
    for name in REGISTRY_SENDS:              # a forged sale ack, configuration, command or update
        assert a.publish(protocol.topic(name, terminal="T-B"), b"forged") == NOT_AUTHORIZED, name
        assert a.publish(protocol.topic(name, terminal="T-A"), b"forged") == NOT_AUTHORIZED, name
    assert a.publish(protocol.topic("enroll_reply", client=a.client_id), b"forged") == NOT_AUTHORIZED
    settle()
    assert b.messages == []


def test_a_terminal_never_receives_another_terminals_messages(probes: dict[str, Probe]) -> None:
    registry, a, b = probes["registry"], probes["A"], probes["B"]
    filters = [protocol.topic(n, terminal="T-B") for n in REGISTRY_SENDS] + [
        "forecourt/v1/terminal/+/inbox", "forecourt/v1/#", "#"]
    for f in filters:                        # granted: mosquitto 2.0.11's acl_file checks on delivery
        assert a.subscribe(f) == GRANTED_QOS1, f
    assert b.subscribe("forecourt/v1/terminal/T-B/#") == GRANTED_QOS1
    for name in REGISTRY_SENDS:
        assert registry.publish(protocol.topic(name, terminal="T-B"), name.encode()) in DELIVERED
    settle((b, len(REGISTRY_SENDS)))
    assert sorted(p for _, p in b.messages) == sorted(n.encode() for n in REGISTRY_SENDS)
    assert a.messages == []


def test_claim_reaches_only_enrollment_topics(broker: Broker, probes: dict[str, Probe]) -> None:
    registry = probes["registry"]
    claim = Probe(broker.port, broker.service("claim"), "claim-" + uuid.uuid4().hex[:8])
    try:
        own_reply = protocol.topic("enroll_reply", client=claim.client_id)
        for f in (own_reply, protocol.subscription("sales"),
                  protocol.topic("terminal_inbox", terminal="claim")):
            claim.subscribe(f)
        assert registry.subscribe("forecourt/v1/#") == GRANTED_QOS1
        assert claim.publish(protocol.topic("enroll_request", client=claim.client_id), b"csr") == 0x00
        for name in TERMINAL_SENDS:
            for device in ("claim", "T-A"):
                assert claim.publish(protocol.topic(name, terminal=device), b"x") == NOT_AUTHORIZED, name
        assert claim.publish(own_reply, b"forged reply") == NOT_AUTHORIZED
        assert claim.publish("forecourt/v2/elsewhere", b"x") == NOT_AUTHORIZED
        for where in (own_reply, protocol.topic("sales", terminal="T-A"),
                      protocol.topic("terminal_inbox", terminal="claim")):
            assert registry.publish(where, b"to " + where.encode()) in DELIVERED
        settle((claim, 1), (registry, 4))        # the request and the registry's own three
        assert claim.messages == [(own_reply, b"to " + own_reply.encode())]
        request = protocol.topic("enroll_request", client=claim.client_id)
        assert [t for t, body in registry.messages if not body.startswith(b"to ")] == [request]
    finally:
        claim.close()


def test_a_terminal_takes_no_part_in_enrollment(probes: dict[str, Probe]) -> None:
    """Not even under its own client id: the enrollment lines are the claim identity's, not patterns."""
    registry, a = probes["registry"], probes["A"]
    assert registry.subscribe("forecourt/v1/enroll/#") == GRANTED_QOS1
    assert a.subscribe("forecourt/v1/enroll/#") == GRANTED_QOS1
    for client in (a.client_id, "claim-SN-1"):
        assert a.publish(protocol.topic("enroll_request", client=client), b"x") == NOT_AUTHORIZED
        assert registry.publish(protocol.topic("enroll_reply", client=client), b"reply") in DELIVERED
    settle()
    assert a.messages == [] and [t for t, _ in registry.messages if t.endswith("/request")] == []


def handshake_without_certificate(port: int, ca: Path) -> str:
    """A TLS client that shows no certificate: the broker's alert (TLS 1.3 sends it after the client's
    Finished, so it arrives with the first read; TLS 1.2 fails the handshake itself)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        try:
            data = tls.recv(16)
        except ssl.SSLError as exc:
            return str(exc.reason)
        return f"answered {data!r}"


def test_no_client_certificate_is_refused_in_the_handshake(broker: Broker) -> None:
    reason = handshake_without_certificate(broker.port, broker.authority.directory / "ca.pem")
    assert reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


def test_a_certificate_from_another_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = Authority.create(tmp_path / "other")
    foreign = client_certificate(other, "T-A", tmp_path)        # the same CN, the wrong CA
    files = TlsFiles(broker.authority.directory / "ca.pem", foreign.cert, foreign.key)
    assert refusal(broker.port, files) == "TLS: TLSV1_ALERT_UNKNOWN_CA"
    assert refusal(broker.port, broker.files("T-A")) is None


def test_a_revoked_certificate_is_refused_once_the_broker_reloads(tmp_path: Path) -> None:
    b = start(tmp_path)
    try:
        connected = Probe(b.port, b.files("T-C"))
        assert refusal(b.port, b.files("T-C")) is None
        b.authority.revoke(b.files("T-C").cert.read_text())
        assert refusal(b.port, b.files("T-C")) is None          # crl.pem is read at start and on SIGHUP
        os.kill(b.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while (reason := refusal(b.port, b.files("T-C"))) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert reason == "TLS: SSLV3_ALERT_CERTIFICATE_REVOKED"
        assert refusal(b.port, b.files("T-A")) is None
        assert connected.is_connected        # a reload keeps connections: a restart drops them
        b.restart()
        assert refusal(b.port, b.files("T-C")) == "TLS: SSLV3_ALERT_CERTIFICATE_REVOKED"
        assert refusal(b.port, b.files("T-A")) is None
        connected.close()
    finally:
        b.proc.stop()


def test_the_broker_refuses_to_start_on_a_damaged_authority(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "pki")
    (authority.directory / "crl.pem").write_text("not a CRL\n")
    port = free_port()
    with pytest.raises(ServiceError, match="exited"):
        start_mosquitto(tmp_path, port, tls_dir=authority.directory)
    assert "Unable to load certificate revocation file" in (tmp_path / "mosquitto.log").read_text()


def test_link_refusal_is_logged_once_and_kept(broker: Broker, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    other = Authority.create(tmp_path / "other")
    foreign = client_certificate(other, "T-A", tmp_path)
    link = MqttLink("127.0.0.1", broker.port, "T-A-link",
                    tls=TlsFiles(broker.authority.directory / "ca.pem", foreign.cert, foreign.key))
    with caplog.at_level(logging.WARNING, logger="drivers.mqtt.link"):
        link.start()
        try:
            time.sleep(3.5)                                    # paho retries after 1, 2 ... s
            assert not link.connected.is_set()
            assert link.refused == "TLS: TLSV1_ALERT_UNKNOWN_CA"
        finally:
            link.stop()
    refusals = [r for r in caplog.records if r.getMessage() == "broker refused connection"]
    assert len(refusals) == 1 and refusals[0].reason == "TLS: TLSV1_ALERT_UNKNOWN_CA"


def test_a_link_with_unusable_tls_files_is_a_config_error(broker: Broker, tmp_path: Path) -> None:
    good = broker.files("T-A")
    with pytest.raises(ConfigError, match="MQTT TLS files unusable"):
        MqttLink("127.0.0.1", broker.port, "x", tls=TlsFiles(good.ca, tmp_path / "missing.pem", good.key))
    with pytest.raises(ConfigError, match="MQTT TLS files unusable"):      # the key of another certificate
        MqttLink("127.0.0.1", broker.port, "x", tls=TlsFiles(good.ca, good.cert, broker.files("T-B").key))



def test_the_terminal_refuses_a_tls_device_key_others_can_read(tmp_path: Path) -> None:
    # the device key is a private key like the PIN key: 0600 or the terminal does not start
    from firmware.config import load_config
    from firmware.terminal import run_terminal
    from provisioning.keys import install_pin_key

    install_pin_key(tmp_path, bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F"))
    for name in ("ca.pem", "device.pem", "device.key"):
        (tmp_path / name).write_text("not used: refused before it is read\n")
    (tmp_path / "device.key").chmod(0o644)
    cfg_path = tmp_path / "terminal.toml"
    cfg_path.write_text('[terminal]\nid = "T-0001"\nstation = "ST-001"\n\n[mqtt]\nport = 9\ntls = true\n')
    cfg = load_config(cfg_path, profile="sim")
    with pytest.raises(ConfigError, match="other users"):
        run_terminal(cfg, threading.Event())


def test_a_broker_closing_the_tls_session_is_not_a_refusal(broker: Broker) -> None:
    # the peer ending the session (close_notify, or the TCP connection dropped without one) reaches recv
    # as SSLZeroReturnError / SSLEOFError: a normal close, which paho handles, not a refusal to log
    from drivers.mqtt.link import tls_context

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki = broker.authority.directory
    server_ctx.load_cert_chain(pki / "broker.pem", pki / "broker.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)                                   # the client's first byte, then a dropped line
            tls.shutdown(socket.SHUT_RDWR)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    reasons: list[str] = []
    context = tls_context(broker.files("T-A"))
    context.report = reasons.append
    raw = socket.create_connection(listener.getsockname(), timeout=5)
    with context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as client:
        client.sendall(b"x")
        with pytest.raises((ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            while client.recv(1024):
                pass
    server.join(5)
    listener.close()
    assert reasons == []
