"""forecourt provision on the device: identity (key, CSR), enrollment, selftest, rotate-cert, status."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError, MessageError
from firmware.config import TerminalConfig
from provisioning.enroll import EnrollmentRefused, EnrollmentUnanswered, InitOptions, enroll
from provisioning.identity import (
    certificate_info,
    check_certificate,
    check_device_id,
    create_device_key,
    load_device_key,
    make_csr,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class ScratchCa:
    """A throwaway CA for the tests of this module (the registry's own is registry.pki)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - dt.timedelta(days=1))
                     .not_valid_after(NOW + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, csr_pem: str, cn: str, days: int = 365) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - dt.timedelta(minutes=5))
                .not_valid_after(NOW + dt.timedelta(days=days))
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()


# -- identity -------------------------------------------------------------------------------------------

def test_device_key_is_made_on_the_device_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    key = create_device_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_device_key(path).private_numbers() == key.private_numbers()
    with pytest.raises(ConfigError, match="never overwritten"):
        create_device_key(path)
    assert load_device_key(path).private_numbers() == key.private_numbers()


def test_a_device_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    create_device_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_device_key(path)


def test_a_key_on_another_curve_is_refused(tmp_path: Path) -> None:
    from firmware.keyfile import write_key_file

    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_key_file(tmp_path / "device.key", other.decode())
    with pytest.raises(ConfigError, match="P-256"):
        load_device_key(tmp_path / "device.key")


def test_csr_names_the_device_and_is_signed_by_its_key(tmp_path: Path) -> None:
    key = create_device_key(tmp_path / "device.key")
    csr = x509.load_pem_x509_csr(make_csr(key, "SN-0042").encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=SN-0042"
    assert csr.public_key() == key.public_key()
    assert b"PRIVATE" not in make_csr(key, "SN-0042").encode()


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "T/1", "registry", "Claim", "broker"])
def test_a_name_unfit_for_a_certificate_or_a_topic_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        check_device_id(bad)


def test_certificate_is_checked_against_key_name_ca_and_clock(tmp_path: Path) -> None:
    ca = ScratchCa()
    key = create_device_key(tmp_path / "device.key")
    cert = ca.issue(make_csr(key, "SN-1"), "T-0001", days=90)
    info = check_certificate(cert, ca.pem, key, common_name="T-0001", now=NOW)
    assert info.common_name == "T-0001" and info.subject == "CN=T-0001" and info.days_left(NOW) == 90
    assert info.fingerprint == certificate_info(cert).fingerprint and len(info.fingerprint) == 64
    with pytest.raises(ConfigError, match="names 'T-0001'"):
        check_certificate(cert, ca.pem, key, common_name="T-0002", now=NOW)
    with pytest.raises(ConfigError, match="not now"):
        check_certificate(cert, ca.pem, key, common_name="T-0001", now=NOW + dt.timedelta(days=91))
    with pytest.raises(ConfigError, match="not signed by the CA"):
        check_certificate(cert, ScratchCa().pem, key, common_name="T-0001", now=NOW)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigError, match="not for this device's key"):
        check_certificate(cert, ca.pem, other, common_name="T-0001", now=NOW)


def test_terminal_config_names_its_tls_files(tmp_path: Path) -> None:
    from firmware.config import load_config

    path = tmp_path / "terminal.toml"
    path.write_text('[terminal]\nid = "T-1"\nstation = "S"\n[mqtt]\ntls = true\ncert = "id/device.pem"\n')
    mqtt = load_config(path, profile="sim").mqtt
    assert (mqtt.tls, mqtt.ca, mqtt.cert, mqtt.key) == (True, "ca.pem", "id/device.pem", "device.key")
    path.write_text('[terminal]\nid = "T-1"\nstation = "S"\n[mqtt]\ntls = "yes"\n')
    with pytest.raises(ConfigError, match="mqtt.tls must be bool"):
        load_config(path, profile="sim")


# -- selftest and status ----------------------------------------------------------------------------------

@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    from hostsim.services import free_port, start_mosquitto

    port = free_port()
    proc = start_mosquitto(tmp_path, port)
    try:
        yield port
    finally:
        proc.stop()


def _terminal_toml(directory: Path, *, broker: int, printer: str, pump_line: str = "sim://",
                   pumps: str = "1, 2", reader: str = "memory://") -> TerminalConfig:
    from firmware.config import load_config

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "terminal.toml"
    path.write_text(f'[terminal]\nid = "T-0042"\nstation = "S-1"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {broker}\n'
                    f'[devices]\ncard_reader = "{reader}"\npump_line = "{pump_line}"\npumps = [{pumps}]\n'
                    f'printer = "{printer}"\n')
    return load_config(path, profile="sim")


CONFIG_KEY = Ed25519PrivateKey.generate()


def _signed_config(version: int, state_dir: Path | None = None, *, days: int = 30) -> bytes:
    """A configuration for T-0042 signed as the registry does; its key trusted in state_dir when given."""
    from contracts import device_messages as d
    from contracts import messages as m
    from contracts.signing import key_id, public_b64, sign_envelope
    from firmware.configstore import write_config_keys

    kid = key_id(CONFIG_KEY.public_key())
    if state_dir is not None:
        write_config_keys(state_dir, {kid: public_b64(CONFIG_KEY.public_key())})
    body = {"station": "S-1", "station_name": "Main St", "currency": "EUR", "prices": [], "products": [],
            "pumps": [], "stop_list": [], "offline_limits": {}, "programs": [], "attendants": [],
            "registry_bundle_key": ""}
    # valid both at the tests' fixed NOW (collect_status) and on the real clock (ConfigStore.offer checks it)
    real = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    fixed = NOW.replace(tzinfo=None)
    issued = min(real, fixed) - dt.timedelta(days=1)
    doc = sign_envelope(body, terminal="T-0042", version=version, issued_at=issued,
                        expires_at=max(real, fixed) + dt.timedelta(days=days), key_id=kid,
                        private_key=CONFIG_KEY)
    return m.encode(doc, d.SIGNED_CONFIG)


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    from drivers.mqtt import MqttLink

    link = MqttLink("127.0.0.1", port, "test-registry")
    link.start()
    try:
        assert link.wait_connected(5)
        link.publish(topic, payload, retain=True)
    finally:
        link.stop()


def test_selftest_passes_every_device_that_answers(tmp_path: Path, mosquitto: int) -> None:
    from contracts import protocol
    from hostsim.printer_server import PrinterServer
    from provisioning.selftest import failed, run_selftest, table

    printer = PrinterServer().start()
    try:
        cfg = _terminal_toml(tmp_path / "t", broker=mosquitto, printer=f"tcp://127.0.0.1:{printer.port}")
        _publish_retained(mosquitto, protocol.topic("config", terminal="T-0042"),
                          _signed_config(3, cfg.state_dir))
        results = run_selftest(cfg, timeout=5)
    finally:
        printer.stop()
    assert [(r.device, r.passed) for r in results] == [
        ("card reader", True), ("pump 1", True), ("pump 2", True), ("printer", True), ("broker", True)]
    assert "configuration version 3 verified" in results[-1].detail and not failed(results)
    assert printer.raw == [] and printer.errors == []           # the check printed nothing
    rows = list(table(results))
    assert rows[0].split() == ["device", "result", "detail"] and rows[2].split()[2] == "PASS"


def test_selftest_fails_each_device_that_does_not_answer(tmp_path: Path, mosquitto: int) -> None:
    from hostsim.services import free_port
    from provisioning.selftest import failed, run_selftest, table

    master, slave = os.openpty()                 # a pump line where no pump answers
    try:
        cfg = _terminal_toml(tmp_path / "t", broker=free_port(), printer=f"tcp://127.0.0.1:{free_port()}",
                             pump_line=os.ttyname(slave), pumps="3", reader="pcsc://No Such Reader")
        results = run_selftest(cfg, timeout=1.5)
    finally:
        os.close(master)
        os.close(slave)
    assert [(r.device, r.passed) for r in results] == [
        ("card reader", False), ("pump 3", False), ("printer", False), ("broker", False)]
    assert failed(results)
    assert "unreachable" in results[-1].detail and "refused" in results[2].detail.lower()
    assert all("FAIL" in row for row in list(table(results))[1:])


def test_selftest_opens_a_printer_device_file_and_never_creates_one(tmp_path: Path) -> None:
    from provisioning.selftest import check_printer

    missing = tmp_path / "dev" / "lp0"
    missing.parent.mkdir()
    cfg = _terminal_toml(tmp_path / "t", broker=1, printer=f"file://{missing}")
    result = check_printer(cfg, timeout=1)
    assert not result.passed and "No such file" in result.detail and not missing.exists()
    missing.write_bytes(b"")
    assert check_printer(cfg, timeout=1).passed


def test_selftest_fails_a_broker_without_the_devices_configuration(tmp_path: Path, mosquitto: int) -> None:
    from provisioning.selftest import check_broker

    cfg = _terminal_toml(tmp_path / "t", broker=mosquitto, printer="memory://")
    result = check_broker(cfg, timeout=1.0)
    assert not result.passed and "no configuration for T-0042" in result.detail


def test_selftest_fails_a_configuration_the_device_would_refuse(tmp_path: Path, mosquitto: int) -> None:
    from contracts import protocol
    from provisioning.selftest import check_broker

    cfg = _terminal_toml(tmp_path / "t", broker=mosquitto, printer="memory://")
    _publish_retained(mosquitto, protocol.topic("config", terminal="T-0042"), _signed_config(4))
    result = check_broker(cfg, timeout=5)                     # no config-keys.json: nothing is trusted
    assert not result.passed and "refused (unknown_key)" in result.detail
    _publish_retained(mosquitto, protocol.topic("config", terminal="T-0042"),
                      _signed_config(5, cfg.state_dir, days=-1))
    result = check_broker(cfg, timeout=5)
    assert not result.passed and "refused (expired)" in result.detail


def test_status_says_who_the_terminal_is_and_how_it_stands(tmp_path: Path, mosquitto: int) -> None:
    from provisioning.status import collect_status, lines, software_version

    ca = ScratchCa()
    cfg = _terminal_toml(tmp_path / "t", broker=mosquitto, printer="memory://")
    key = create_device_key(cfg.state_dir / "device.key")
    (cfg.state_dir / "device.pem").write_text(ca.issue(make_csr(key, "SN-9"), "T-0042", days=30))
    from firmware.configstore import ConfigStore

    signed = _signed_config(7, cfg.state_dir)
    ConfigStore(cfg.state_dir, terminal="T-0042").offer(signed)
    status = collect_status(cfg, now=NOW, timeout=5)
    assert (status.terminal, status.station, status.config_version) == ("T-0042", "S-1", 7)
    assert status.certificate is not None and status.certificate.subject == "CN=T-0042"
    assert status.backlog == 0 and status.broker.startswith("reachable")
    text = "\n".join(lines(status))
    assert "(30 days left)" in text and status.certificate.fingerprint in text and software_version() in text
    assert "PRIVATE" not in text
    (cfg.state_dir / "software").mkdir(exist_ok=True)
    os.symlink("1.4.2", cfg.state_dir / "software" / "current")      # the updater runs 1.4.2
    assert collect_status(cfg, now=NOW, probe_broker=False).software_version == "1.4.2"


def test_status_counts_the_sales_the_registry_has_not_acknowledged(tmp_path: Path) -> None:
    from firmware.sale.journal import Journal
    from firmware.sale.machine import SaleState
    from provisioning.status import collect_status, lines

    cfg = _terminal_toml(tmp_path / "t", broker=1, printer="memory://")
    journal = Journal(cfg.state_dir / "journal.db")
    for n, sale_id in enumerate(["s-1", "s-2", "s-3"]):
        journal.begin_sale(sale_id, 1, "707700******0011", "tok", program="fleet")
        for state in (SaleState.AUTHORIZING, SaleState.APPROVED):
            journal.transition(sale_id, state)
        journal.transition(sale_id, SaleState.COMPLETED, finished_at=NOW.timestamp() - 600 + n)
    journal.mark("s-3", "synced")
    journal.close()
    status = collect_status(cfg, now=NOW, probe_broker=False)
    assert (status.backlog, round(status.oldest_unsent_s)) == (2, 600)
    assert "2 unsent, oldest 600 s" in "\n".join(lines(status))


def test_status_without_a_certificate_or_a_broker_says_so(tmp_path: Path) -> None:
    from hostsim.services import free_port
    from provisioning.status import collect_status, lines

    cfg = _terminal_toml(tmp_path / "t", broker=free_port(), printer="memory://")
    text = "\n".join(lines(collect_status(cfg, now=NOW, timeout=1)))
    assert "run forecourt provision init" in text and "unreachable" in text and "none yet" in text


# -- init: enrollment by claim, against a TLS broker with the ACL -------------------------------------------

PIN_KEY, DUKPT_KEY, DUKPT_ID = bytes(range(16)), bytes(range(16, 32)), bytes.fromhex("0102030405060708")
TOKEN = "t" * 43


@dataclass
class Pki:
    authority: Any
    port: int
    directory: Path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Pki]:
    from hostsim.services import free_port, start_mosquitto
    from registry.pki import Authority

    authority = Authority.create(tmp_path / "pki")
    port = free_port()
    proc = start_mosquitto(tmp_path, port, tls_dir=authority.directory)
    try:
        yield Pki(authority, port, authority.directory)
    finally:
        proc.stop()


class FakeOperator:
    """The registry's half of enrollment as the wire sees it, under the registry's certificate: each
    request is answered by `answer` (a list of reply documents, published retained one after another)."""

    def __init__(self, pki: Pki, answer: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
        from drivers.mqtt import MqttLink, TlsFiles

        self.pki, self.answer, self.requests = pki, answer, []
        f = pki.directory
        self.link = MqttLink("127.0.0.1", pki.port, "registry-test",
                             tls=TlsFiles(f / "ca.pem", f / "registry.pem", f / "registry.key"))
        self.link.subscribe(protocol.subscription("enroll_request"), self._on_request)
        self.link.start()
        assert self.link.wait_connected(10), self.link.refused

    def _on_request(self, topic: str, payload: bytes, props: object) -> None:
        doc = m.decode(payload, d.ENROLL_REQUEST)
        self.requests.append(doc)
        client = topic.split("/")[-2]
        for reply in self.answer(doc):
            time.sleep(0.2)
            self.link.publish(protocol.topic("enroll_reply", client=client), m.encode(reply, d.ENROLL_REPLY),
                              retain=True)

    def accepted(self, doc: dict[str, Any], device_id: str = "T-0042") -> dict[str, Any]:
        from contracts.sealbox import keys_context, seal
        from contracts.signing import key_id, public_b64

        issued = self.pki.authority.issue(doc["csr_pem"], device_id)
        public = x509.load_pem_x509_csr(doc["csr_pem"].encode()).public_key()
        keys = json.dumps({"pin_key": PIN_KEY.hex(), "dukpt_initial_key": DUKPT_KEY.hex(),
                           "dukpt_key_id": DUKPT_ID.hex()}).encode()
        return {"request_id": doc["request_id"], "status": "accepted", "reason": "", "device_id": device_id,
                "station": "S-1", "certificate_pem": issued.cert_pem, "ca_pem": self.pki.authority.ca_pem,
                "config_keys": {key_id(CONFIG_KEY.public_key()): public_b64(CONFIG_KEY.public_key())},
                "keys_sealed": seal(public, keys, context=keys_context(device_id, doc["request_id"])),
                "server_time": _now_wire()}

    def stop(self) -> None:
        self.link.stop()


def _now_wire() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pending(doc: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": doc["request_id"], "status": "pending", "reason": "waiting for an operator",
            "device_id": "T-0042", "station": "S-1", "server_time": _now_wire()}


def _refused(reason: str, server_time: str | None = None) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    return lambda doc: [{"request_id": doc["request_id"], "status": "refused", "reason": reason,
                         "server_time": server_time or _now_wire()}]


def _init(pki: Pki, state: Path, **kw: Any) -> InitOptions:
    return InitOptions(**{"state_dir": state, "host": "127.0.0.1", "port": pki.port, "token": TOKEN,
                          "serial": "SN-0042", "claim_dir": pki.directory, "wait": 10.0, **kw})


def test_init_enrolls_a_fresh_state_directory(tls_broker: Pki, tmp_path: Path) -> None:
    from firmware.config import load_config
    from firmware.configstore import load_config_keys

    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    said: list[str] = []
    state = tmp_path / "device"
    try:
        done = enroll(_init(tls_broker, state), say=said.append)
    finally:
        operator.stop()
    assert (done.device_id, done.station, done.certificate.common_name) == ("T-0042", "S-1", "T-0042")
    request = operator.requests[0]
    assert request["serial"] == "SN-0042" and request["token"] == TOKEN
    assert x509.load_pem_x509_csr(request["csr_pem"].encode()).subject.rfc4514_string() == "CN=SN-0042"
    for name in ("device.key", "device.pem", "ca.pem", "config-keys.json", "pek.hex", "dukpt.toml",
                 "terminal.toml"):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name
    assert (state / "pek.hex").read_text().strip() == PIN_KEY.hex().upper()
    assert DUKPT_KEY.hex().upper() in (state / "dukpt.toml").read_text()
    assert list(load_config_keys(state)) == [key_id_of_config()]
    cfg = load_config(state / "terminal.toml", profile="sim")
    assert (cfg.terminal.id, cfg.terminal.station, cfg.mqtt.port, cfg.mqtt.tls) == ("T-0042", "S-1",
                                                                                    tls_broker.port, True)
    assert not (state / "enroll-request.json").exists()
    assert all(PIN_KEY.hex() not in line.lower() and "PRIVATE" not in line for line in said)
    # the device now reaches the broker under its own certificate
    from provisioning.status import connect_as_device

    connect_as_device(cfg, client="test", timeout=10).stop()


def key_id_of_config() -> str:
    from contracts.signing import key_id

    return key_id(CONFIG_KEY.public_key())


def test_init_waits_for_an_operator_and_resumes_after_an_interruption(tls_broker: Pki,
                                                                      tmp_path: Path) -> None:
    accept = threading.Event()

    def answer(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [_pending(doc)]

    operator = FakeOperator(tls_broker, answer)
    said: list[str] = []
    state = tmp_path / "device"
    try:
        with pytest.raises(EnrollmentUnanswered, match="still waiting for an operator to accept T-0042"):
            enroll(_init(tls_broker, state, wait=1.5), say=said.append)
        assert said == ["waiting for an operator to accept T-0042 (forecourt registry device accept T-0042)"]
        first = operator.requests[0]

        def operator_accepts() -> None:
            accept.wait(10)
            time.sleep(0.5)
            operator.link.publish(protocol.topic("enroll_reply", client="claim-SN-0042"),
                                  m.encode(operator.accepted(first), d.ENROLL_REPLY), retain=True)

        threading.Thread(target=operator_accepts, daemon=True).start()
        accept.set()
        done = enroll(_init(tls_broker, state, wait=10), say=said.append)
    finally:
        operator.stop()
    assert done.device_id == "T-0042" and len(operator.requests) == 1     # the token was spent once
    assert said[1] == f"resuming enrollment request {first['request_id']}"


@pytest.mark.parametrize(("reason", "text"), [
    ("token_unknown", "does not know this enrollment token"), ("token_expired", "has expired"),
    ("token_used", "used already"), ("bad_csr", "certificate request (CSR)"),
    ("serial_taken", "serial number is enrolled already")])
def test_a_refused_enrollment_says_why(reason: str, text: str) -> None:
    from provisioning.enroll import refusal

    error = refusal({"request_id": "r", "status": "refused", "reason": reason, "server_time": _now_wire()},
                    now=dt.datetime.now(dt.UTC))
    assert isinstance(error, ConfigError) and error.reason == reason and text in str(error)


def test_a_clock_far_off_names_both_clocks(tls_broker: Pki, tmp_path: Path) -> None:
    operator = FakeOperator(tls_broker, _refused("clock_skew", "2026-12-01T12:00:00.000000Z"))
    device_clock = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)
    try:
        with pytest.raises(EnrollmentRefused) as caught:
            enroll(_init(tls_broker, tmp_path / "device"), say=lambda _: None, clock=lambda: device_clock)
    finally:
        operator.stop()
    text = str(caught.value)
    assert "2026-12-01 14:30:00 UTC" in text and "2026-12-01 12:00:00 UTC" in text and "+9000 s" in text
    assert operator.requests[0]["client_time"].startswith("2026-12-01T14:30:00")
    assert not (tmp_path / "device" / "terminal.toml").exists()


def test_a_broker_unreachable_or_refusing_the_claim_certificate(tls_broker: Pki, tmp_path: Path) -> None:
    from hostsim.services import free_port
    from provisioning.status import BrokerRefused, BrokerUnreachable
    from registry.pki import Authority

    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:\d+ unreachable"):
        enroll(dataclasses.replace(_init(tls_broker, tmp_path / "a"), port=free_port()), say=print)
    stranger = Authority.create(tmp_path / "other-ca")                  # a claim certificate of another CA
    (tmp_path / "claim").mkdir()
    for name in ("claim.pem", "claim.key"):
        (tmp_path / "claim" / name).write_bytes((stranger.directory / name).read_bytes())
    (tmp_path / "claim" / "ca.pem").write_bytes((tls_broker.directory / "ca.pem").read_bytes())
    with pytest.raises(BrokerRefused, match="refused the claim certificate: TLS"):
        enroll(_init(tls_broker, tmp_path / "b", claim_dir=tmp_path / "claim"), say=print)


def test_a_certificate_for_another_key_installs_nothing(tls_broker: Pki, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())

    def answer(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [operator.accepted(doc | {"csr_pem": make_csr(other, "SN-0042")})]

    operator = FakeOperator(tls_broker, answer)
    try:
        with pytest.raises(ConfigError, match="not for this device's key"):
            enroll(_init(tls_broker, tmp_path / "device"), say=print)
    finally:
        operator.stop()
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == ["device.key", "enroll-request.json"]


def test_a_reply_with_another_ca_than_the_claim_kits_installs_nothing(tls_broker: Pki,
                                                                     tmp_path: Path) -> None:
    # the claim kit's ca.pem authenticated the broker; a reply naming another CA (with a certificate that
    # CA signed) would make the terminal trust a broker nobody checked
    from registry.pki import Authority

    rogue = Authority.create(tmp_path / "rogue")

    def answer(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [operator.accepted(doc) | {"certificate_pem": rogue.issue(doc["csr_pem"], "T-0042").cert_pem,
                                          "ca_pem": rogue.ca_pem}]

    operator = FakeOperator(tls_broker, answer)
    try:
        with pytest.raises(ConfigError, match="not the CA of the claim kit"):
            enroll(_init(tls_broker, tmp_path / "device"), say=print)
    finally:
        operator.stop()
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == ["device.key", "enroll-request.json"]


@pytest.mark.parametrize("damage", ["config_keys", "dukpt_key_id"])
def test_a_reply_failing_any_check_writes_no_key(tls_broker: Pki, tmp_path: Path, damage: str) -> None:
    from contracts.sealbox import keys_context, seal
    from contracts.signing import public_b64

    def answer(doc: dict[str, Any]) -> list[dict[str, Any]]:
        reply = operator.accepted(doc)
        if damage == "config_keys":            # a key id that is not its key's
            reply["config_keys"] = {"0" * 16: public_b64(CONFIG_KEY.public_key())}
        else:                                  # a 7-byte DUKPT key id, found after the PIN key was written
            public = x509.load_pem_x509_csr(doc["csr_pem"].encode()).public_key()
            keys = json.dumps({"pin_key": PIN_KEY.hex(), "dukpt_initial_key": DUKPT_KEY.hex(),
                               "dukpt_key_id": DUKPT_ID.hex()[:14]}).encode()
            reply["keys_sealed"] = seal(public, keys, context=keys_context("T-0042", doc["request_id"]))
        return [reply]

    operator = FakeOperator(tls_broker, answer)
    try:
        with pytest.raises((ConfigError, MessageError)):
            enroll(_init(tls_broker, tmp_path / "device"), say=print)
    finally:
        operator.stop()
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == ["device.key", "enroll-request.json"]


def test_an_install_cut_short_is_not_taken_for_a_provisioned_directory(tls_broker: Pki,
                                                                      tmp_path: Path) -> None:
    # device.pem written, terminal.toml not yet: init runs again; terminal.toml with [mqtt] tls is the mark
    state = tmp_path / "device"
    state.mkdir()
    (state / "device.pem").write_text("left by an install cut short\n")
    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    try:
        done = enroll(_init(tls_broker, state), say=print)
    finally:
        operator.stop()
    assert done.device_id == "T-0042" and "BEGIN CERTIFICATE" in (state / "device.pem").read_text()
    with pytest.raises(ConfigError, match="provisioned already"):
        enroll(_init(tls_broker, state), say=print)


def test_init_keeps_the_technicians_devices_and_refuses_a_provisioned_directory(tls_broker: Pki,
                                                                               tmp_path: Path) -> None:
    state = tmp_path / "device"
    state.mkdir()
    (state / "terminal.toml").write_text('[terminal]\nid = "X"\nstation = "Y"\n'
                                         'state_dir = "/var/elsewhere"\n\n[devices]\n'
                                         'pump_line = "sim://"\npumps = [1, 2]\n'
                                         'printer = "tcp://10.0.0.9:9100"\npin_key = "keys/fleet-pin.hex"\n')
    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    try:
        enroll(_init(tls_broker, state), say=print)
    finally:
        operator.stop()
    from firmware.config import load_config

    cfg = load_config(state / "terminal.toml", profile="sim")
    assert (cfg.terminal.id, cfg.devices.pumps, cfg.devices.printer) == ("T-0042", (1, 2), "tcp://10.0.0.9:9100")
    assert cfg.state_dir == state.resolve() and (state / "keys" / "fleet-pin.hex").exists()
    assert not (state / "pek.hex").exists()               # the key went where the prepared file said
    with pytest.raises(ConfigError, match="provisioned already"):
        enroll(_init(tls_broker, state), say=print)


@pytest.mark.parametrize("bad", [{"token": "short"}, {"serial": "a/b"}, {"device_id": "registry"}, {}])
def test_init_refuses_bad_options_before_connecting(tmp_path: Path, bad: dict[str, str]) -> None:
    opts = InitOptions(state_dir=tmp_path / "s", host="127.0.0.1", port=1, token=TOKEN, serial="SN-1",
                       claim_dir=tmp_path)
    for name in ("ca.pem", "claim.pem", "claim.key"):
        (tmp_path / name).write_text("")
    if not bad:                                     # a prepared terminal.toml naming a key outside
        opts.state_dir.mkdir()
        (opts.state_dir / "terminal.toml").write_text('[devices]\npin_key = "../pek.hex"\n')
    with pytest.raises(ConfigError):
        enroll(dataclasses.replace(opts, **bad), say=print)


def test_a_resumed_request_the_registry_never_got_is_sent_again(tls_broker: Pki, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import provisioning.enroll

    monkeypatch.setattr(provisioning.enroll, "RESEND_AFTER", 0.5)
    state = tmp_path / "device"
    state.mkdir()
    request_id = "0f8fad5b-d9cb-469f-a165-70867728950e"     # init interrupted before its request went out
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    (state / "enroll-request.json").write_text(json.dumps({"request_id": request_id, "serial": "SN-0042",
                                                           "token_sha256": digest}))
    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    try:
        enroll(_init(tls_broker, state), say=print)
    finally:
        operator.stop()
    assert [r["request_id"] for r in operator.requests] == [request_id]


# -- rotate-cert, against the registry's real handler (registry.certs) --------------------------------------

@dataclass
class Rotation:
    cfg: TerminalConfig
    sessions: Any
    rotator: Any
    link: Any


@pytest.fixture
def rotation(tls_broker: Pki, tmp_path: Path) -> Iterator[Rotation]:
    from drivers.mqtt import MqttLink, TlsFiles
    from firmware.config import load_config
    from provisioning.enroll import write_terminal_toml
    from registry.certs import CertRotator
    from registry.db import open_database
    from registry.models import Device, Station

    pki, state = tls_broker, tmp_path / "device"
    key = create_device_key(state / "device.key")
    issued = pki.authority.issue(make_csr(key, "SN-0042"), "T-0042")
    (state / "device.pem").write_text(issued.cert_pem)
    (state / "ca.pem").write_text(pki.authority.ca_pem)
    write_terminal_toml(state / "terminal.toml", terminal={"id": "T-0042", "station": "S-1"},
                        mqtt={"host": "127.0.0.1", "port": pki.port, "tls": True})
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as s:
        s.add(Station(id="S-1", name="Main St"))
        s.flush()
        s.add(Device(id="T-0042", station_id="S-1", pin_key_hex="00", cert_fingerprint=issued.fingerprint,
                     cert_pem=issued.cert_pem))
        s.commit()
    f = pki.directory
    link = MqttLink("127.0.0.1", pki.port, "registry-certs",
                    tls=TlsFiles(f / "ca.pem", f / "registry.pem", f / "registry.key"))
    rotator = CertRotator(sessions, link, pki.authority,
                          clock=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    for subscription, handler in rotator.handlers():
        link.subscribe(subscription, handler)
    link.start()
    assert link.wait_connected(10), link.refused
    try:
        yield Rotation(load_config(state / "terminal.toml", profile="sim"), sessions, rotator, link)
    finally:
        link.stop()
        engine.dispose()


def test_rotate_cert_swaps_to_a_new_key_and_revokes_the_old(rotation: Rotation, tls_broker: Pki) -> None:
    from firmware.config import load_config
    from provisioning.rotate import rotate_certificate
    from provisioning.status import connect_as_device
    from registry.models import Device
    from registry.pki import fingerprint

    old_cfg, state = rotation.cfg, rotation.cfg.state_dir
    old_key = (state / "device.key").read_text()
    old_cert = x509.load_pem_x509_certificate((state / "device.pem").read_bytes())
    info = rotate_certificate(old_cfg, timeout=10)
    cfg = load_config(state / "terminal.toml", profile="sim")
    assert cfg.mqtt.cert == f"device-{info.fingerprint[:16]}.pem" and cfg.mqtt.key.endswith(".key")
    assert not (state / "device.key").exists() and not (state / "device.pem").exists()
    assert (state / cfg.mqtt.key).read_text() != old_key
    assert stat.S_IMODE(os.stat(state / cfg.mqtt.key).st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == sorted(["ca.pem", "terminal.toml", cfg.mqtt.key,
                                                              cfg.mqtt.cert])
    with rotation.sessions() as s:
        device = s.get(Device, "T-0042")
        assert device is not None and device.cert_fingerprint == info.fingerprint
        assert device.cert_pem is not None and fingerprint(device.cert_pem) == info.fingerprint
    assert old_cert.serial_number in tls_broker.authority.revoked_serials()
    assert not (tls_broker.directory / "issued").exists()        # the database holds it, not the CA's dir
    connect_as_device(cfg, client="test", timeout=10).stop()              # the new pair reaches the broker


def test_rotate_cert_refused_keeps_the_current_certificate(rotation: Rotation) -> None:
    from provisioning.rotate import RotationRefused, rotate_certificate
    from registry.models import Device

    with rotation.sessions() as s:
        device = s.get(Device, "T-0042")
        assert device is not None
        device.status = "revoked"
        s.commit()
    state = rotation.cfg.state_dir
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    with pytest.raises(RotationRefused, match="device_not_active"):
        rotate_certificate(rotation.cfg, timeout=10)
    after = {p.name: p.read_bytes() for p in state.iterdir() if p.name != "device.key.new"}
    assert after == before


def test_registry_refuses_a_certificate_request_for_another_device(rotation: Rotation) -> None:
    from registry.certs import handle_cert_request

    key = ec.generate_private_key(ec.SECP256R1())
    doc = {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "terminal": "T-0001",
           "csr_pem": make_csr(key, "T-0001")}
    with rotation.sessions() as s:
        reply, old = handle_cert_request(s, rotation.rotator.authority, doc, "T-0042",
                                         dt.datetime.now(dt.UTC).replace(tzinfo=None))
    assert (reply["status"], reply["reason"], old) == ("refused", "wrong_terminal", None)


def test_a_certificate_request_asked_again_gets_the_same_certificate(tmp_path: Path) -> None:
    """The reply is lost (broker away at publish: logged, not raised); the device asks again with the same
    key and gets the certificate issued the first time: nothing issued or revoked again."""
    from contracts.errors import HostUnavailable
    from registry.certs import CertRotator
    from registry.db import open_database
    from registry.models import Device, Station
    from registry.pki import Authority

    authority = Authority.create(tmp_path / "pki")
    first = authority.issue(make_csr(ec.generate_private_key(ec.SECP256R1()), "SN-0042"), "T-0042")
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as s:
        s.add(Station(id="S-1", name="Main St"))
        s.flush()
        s.add(Device(id="T-0042", station_id="S-1", pin_key_hex="00", cert_fingerprint=first.fingerprint,
                     cert_pem=first.cert_pem))
        s.commit()

    class Link:
        def __init__(self) -> None:
            self.down, self.sent = True, list[bytes]()

        def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                    properties: Any = None) -> None:
            if self.down:
                raise HostUnavailable("not connected to the broker")
            self.sent.append(payload)

    link = Link()
    rotator = CertRotator(sessions, link, authority, clock=lambda: NOW.replace(tzinfo=None))
    doc = {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "terminal": "T-0042",
           "csr_pem": make_csr(ec.generate_private_key(ec.SECP256R1()), "T-0042")}
    topic = protocol.topic("cert_request", terminal="T-0042")
    rotator.on_request(topic, m.encode(doc, d.CERT_REQUEST))      # issued; the reply is lost
    with sessions() as s:
        device = s.get(Device, "T-0042")
        assert device is not None and device.cert_pem != first.cert_pem
        new = device.cert_pem
    link.down = False
    rotator.on_request(topic, m.encode(doc, d.CERT_REQUEST))      # asked again
    reply = m.decode(link.sent[-1], d.CERT_REPLY)
    assert (reply["status"], reply["certificate_pem"]) == ("issued", new)
    old_serial = x509.load_pem_x509_certificate(first.cert_pem.encode()).serial_number
    assert authority.revoked_serials() == [old_serial]          # the first certificate, once
    engine.dispose()


# -- the command line ----------------------------------------------------------------------------------------

def test_provision_commands_have_help_with_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import main

    for command in ("init", "selftest", "rotate-cert", "status"):
        with pytest.raises(SystemExit) as done:
            main(["provision", command, "--help"])
        assert done.value.code == 0
        assert "exit codes" in capsys.readouterr().out


def test_init_exit_codes_bad_token_2_broker_unreachable_3(tmp_path: Path, tls_broker: Pki,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import EXIT_ENVIRONMENT, EXIT_USAGE, main
    from hostsim.services import free_port

    args = ["provision", "init", "--state-dir", str(tmp_path / "s"), "--serial", "SN-1", "--claim-dir",
            str(tls_broker.directory)]
    assert main([*args, "--broker", f"127.0.0.1:{tls_broker.port}", "--token", "short"]) == EXIT_USAGE
    assert main([*args, "--broker", f"127.0.0.1:{free_port()}", "--token", TOKEN]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--token" in err[0] and "unreachable" in err[1] and TOKEN not in "".join(err)
    from registry.pki import Authority

    stranger = Authority.create(tmp_path / "other-ca")      # a claim certificate the broker does not trust
    claim = tmp_path / "claim"
    claim.mkdir()
    for name in ("claim.pem", "claim.key"):
        (claim / name).write_bytes((stranger.directory / name).read_bytes())
    (claim / "ca.pem").write_bytes((tls_broker.directory / "ca.pem").read_bytes())
    args[args.index("--claim-dir") + 1] = str(claim)
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "forecourtcli", *args, "--broker",
                           f"127.0.0.1:{tls_broker.port}", "--token", TOKEN], capture_output=True, text=True,
                          timeout=60, check=False)
    err = done.stderr.splitlines()          # one line: the library's own warning is not shown by default
    assert done.returncode == EXIT_USAGE and len(err) == 1 and "refused the claim certificate: TLS" in err[0]


def test_status_and_selftest_from_the_command_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import main
    from hostsim.services import free_port

    cfg = _terminal_toml(tmp_path / "t", broker=free_port(), printer="memory://", pumps="1")
    assert main(["provision", "status", "--config", cfg.source, "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["terminal", "T-0042"] and "not checked" in out
    assert main(["provision", "selftest", "--config", cfg.source, "--timeout", "2"]) == 1    # no broker
    rows = capsys.readouterr().out.splitlines()
    assert [row.split("  ")[0].strip() for row in rows[1:]] == [
        "card reader", "pump 1", "printer", "broker"]
    assert "FAIL" in rows[-1] and all("PASS" in row for row in rows[1:-1])


def test_a_new_token_starts_a_new_request(tls_broker: Pki, tmp_path: Path) -> None:
    state = tmp_path / "device"
    state.mkdir()
    old = {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "serial": "SN-0042",
           "token_sha256": hashlib.sha256(b"another-token-spent-long-ago").hexdigest()}
    (state / "enroll-request.json").write_text(json.dumps(old))
    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    try:
        enroll(_init(tls_broker, state), say=print)
    finally:
        operator.stop()
    assert len(operator.requests) == 1 and operator.requests[0]["request_id"] != old["request_id"]


def test_init_from_the_command_line_prints_no_key_and_the_next_step(
        tls_broker: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forecourtcli.main import main

    operator = FakeOperator(tls_broker, lambda doc: [operator.accepted(doc)])
    try:
        code = main(["provision", "init", "--state-dir", str(tmp_path / "s"), "--serial", "SN-0042",
                     "--claim-dir", str(tls_broker.directory), "--broker", f"127.0.0.1:{tls_broker.port}",
                     "--token", TOKEN])
    finally:
        operator.stop()
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("enrolled as T-0042 at station S-1\n")
    assert "add its [devices], then forecourt provision selftest --config" in out
    key = (tmp_path / "s" / "device.key").read_text()
    assert key.splitlines()[1] not in out and PIN_KEY.hex() not in out.lower() and TOKEN not in out


@pytest.mark.parametrize("shift", [dt.timedelta(days=3), dt.timedelta(days=-30)])
def test_a_certificate_out_of_its_dates_points_at_the_clock(tls_broker: Pki, tmp_path: Path,
                                                           shift: dt.timedelta) -> None:
    from drivers.mqtt import TlsFiles
    from provisioning.status import BrokerRefused, connect

    key = create_device_key(tmp_path / "device.key")
    issued = tls_broker.authority.issue(make_csr(key, "T-1"), "T-1", days=1,
                                        now=dt.datetime.now(dt.UTC) + shift)   # as a clock off by `shift`
    (tmp_path / "device.pem").write_text(issued.cert_pem)
    files = TlsFiles(tls_broker.directory / "ca.pem", tmp_path / "device.pem", tmp_path / "device.key")
    with pytest.raises(BrokerRefused, match="check this device's clock"):
        connect("127.0.0.1", tls_broker.port, "forecourt-test-T-1", tls=files, timeout=5, identity="device")


def test_certificate_rotation_runs_only_where_the_registry_holds_the_ca(tmp_path: Path) -> None:
    from drivers.mqtt import TlsFiles
    from registry.certs import cert_rotation_handlers
    from registry.pki import Authority

    authority = Authority.create(tmp_path / "pki")
    folder = authority.directory
    tls = TlsFiles(folder / "ca.pem", folder / "registry.pem", folder / "registry.key")

    def handlers(files: TlsFiles | None) -> list[str]:
        return [s for s, _ in cert_rotation_handlers(None, None, files, clock=dt.datetime.now)]

    assert handlers(tls) == [protocol.subscription("cert_request")]
    assert handlers(None) == []                                  # no TLS: no authority
    (folder / "ca.key").rename(tmp_path / "ca.key.offline")
    assert handlers(tls) == []                                   # the CA signs elsewhere


def test_init_reads_the_token_from_standard_input_or_the_environment(
        tmp_path: Path, tls_broker: Pki, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A token on the command line shows in `ps` and the shell's history: `--token -` reads it from
    standard input, and without --token it comes from $FORECOURT_ENROLLMENT_TOKEN."""
    import io

    from forecourtcli.main import EXIT_ENVIRONMENT, EXIT_USAGE, main
    from hostsim.services import free_port

    args = ["provision", "init", "--state-dir", str(tmp_path / "s"), "--serial", "SN-1", "--claim-dir",
            str(tls_broker.directory), "--broker", f"127.0.0.1:{free_port()}"]
    monkeypatch.delenv("FORECOURT_ENROLLMENT_TOKEN", raising=False)
    assert main(args) == EXIT_USAGE
    assert "standard input" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main([*args, "--token", "-"]) == EXIT_USAGE               # the token read is checked as given
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main([*args, "--token", "-"]) == EXIT_ENVIRONMENT         # a good one: on to the broker
    monkeypatch.setenv("FORECOURT_ENROLLMENT_TOKEN", TOKEN)
    assert main(args) == EXIT_ENVIRONMENT
    assert TOKEN not in capsys.readouterr().err
