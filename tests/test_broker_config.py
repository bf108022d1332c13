"""`forecourt broker-config`: the Mosquitto it configures really persists in --data-dir, and with --tls-dir
speaks TLS with client certificates and the ACL made from contracts.protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import protocol
from drivers.mqtt import MqttLink, TlsFiles
from forecourtcli.main import EXIT_OK, EXIT_USAGE, main
from hostsim.services import Process, free_port, wait_port
from registry.acl import acl_text
from registry.broker import ACL_NAME, broker_config


def test_broker_persists_in_a_data_directory_it_did_not_make(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)                # made by whoever runs it (root here), as an installer would
    conf, port = tmp_path / "mosquitto.conf", free_port()
    assert main(["broker-config", "--port", str(port), "--data-dir", str(data), "-o", str(conf)]) == EXIT_OK
    broker = Process("mosquitto", [exe, "-c", str(conf)], tmp_path / "mosquitto.log")
    try:
        wait_port(port, 10, broker)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.publish("forecourt/test", b"kept", qos=1, retain=True).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
    finally:
        assert broker.stop() == 0
    log = (tmp_path / "mosquitto.log").read_text()
    assert "Permission denied" not in log and "Error" not in log, log
    assert (data / "mosquitto.db").stat().st_size > 0          # saved on a clean stop


def test_tls_config_requires_a_certificate_of_the_authority(tmp_path: Path) -> None:
    text = broker_config(8883, tls_dir=tmp_path)
    for line in (f"cafile {tmp_path / 'ca.pem'}", f"certfile {tmp_path / 'broker.pem'}",
                 f"keyfile {tmp_path / 'broker.key'}", f"crlfile {tmp_path / 'crl.pem'}",
                 "require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2",
                 "allow_anonymous false", f"acl_file {tmp_path / ACL_NAME}"):
        assert line in text.splitlines(), line
    assert "allow_anonymous true" not in text


def test_acl_is_the_protocol_table() -> None:
    lines = acl_text().splitlines()
    claim = lines[lines.index("user claim") + 1:lines.index("topic deny forecourt/v1/terminal/#") + 1]
    for t in protocol.TABLE:
        if "{terminal}" in t.pattern:
            want = "write" if t.sender == protocol.TERMINAL else "read"
            assert f"pattern {want} {t.pattern.format(terminal='%u')}" in lines, t.name
        else:                                   # enrollment: the claim identity's own lines, no pattern
            want = "write" if t.sender == protocol.CLAIM else "read"
            assert f"topic {want} {t.pattern.format(client='+')}" in claim, t.name
    assert claim[-1] == "topic deny forecourt/v1/terminal/#"    # what %u=claim would reach in the patterns
    assert not [line for line in lines if line.startswith("pattern") and "/enroll/" in line]
    assert not [line for line in lines if line.startswith("pattern readwrite")]
    at = lines.index("user registry")
    assert lines[at + 1] == "topic readwrite forecourt/v1/#"
    patterns = [i for i, line in enumerate(lines) if line.startswith("pattern")]
    users = [i for i, line in enumerate(lines) if line.startswith(("user", "topic"))]
    assert max(users) < min(patterns)


def test_cli_tls_dir_writes_config_and_acl_the_broker_runs_with(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    pki = tmp_path / "pki"
    assert main(["registry", "pki", "init", "--dir", str(pki)]) == EXIT_OK
    conf, port = tmp_path / "mosquitto.conf", free_port()
    assert main(["broker-config", "--port", str(port), "--tls-dir", str(pki), "-o", str(conf)]) == EXIT_OK
    assert (pki / ACL_NAME).read_text() == acl_text()
    broker = Process("mosquitto", [exe, "-c", str(conf)], tmp_path / "mosquitto.log")
    try:
        wait_port(port, 10, broker)
        link = MqttLink("127.0.0.1", port, "forecourt-registry",
                        tls=TlsFiles(pki / "ca.pem", pki / "registry.pem", pki / "registry.key"))
        link.start()
        try:
            assert link.wait_connected(10), link.refused
        finally:
            link.stop()
        plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain")     # no TLS: never a CONNACK
        plain.connect("127.0.0.1", port, keepalive=5)
        for _ in range(20):
            plain.loop(0.1)
        assert not plain.is_connected()
        plain.disconnect()
    finally:
        assert broker.stop() == 0


def test_cli_tls_dir_without_an_authority_is_a_usage_error(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker-config", "--tls-dir", str(tmp_path)]) == EXIT_USAGE
    assert "pki init" in capsys.readouterr().err
