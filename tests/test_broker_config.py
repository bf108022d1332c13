"""`forecourt broker-config --data-dir`: the Mosquitto it configures really persists there."""

from __future__ import annotations

import shutil
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from forecourtcli.main import EXIT_OK, main
from hostsim.services import Process, free_port, wait_port


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
