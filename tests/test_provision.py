"""forecourt provision on the device: identity (key, CSR), enrollment, selftest, rotate-cert, status."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from contracts.errors import ConfigError
from firmware.config import TerminalConfig
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
    issued = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(days=1)
    doc = sign_envelope(body, terminal="T-0042", version=version, issued_at=issued,
                        expires_at=issued + dt.timedelta(days=days), key_id=kid, private_key=CONFIG_KEY)
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


def test_status_without_a_certificate_or_a_broker_says_so(tmp_path: Path) -> None:
    from hostsim.services import free_port
    from provisioning.status import collect_status, lines

    cfg = _terminal_toml(tmp_path / "t", broker=free_port(), printer="memory://")
    text = "\n".join(lines(collect_status(cfg, now=NOW, timeout=1)))
    assert "run forecourt provision init" in text and "unreachable" in text and "none yet" in text
