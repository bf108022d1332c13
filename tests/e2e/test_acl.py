"""acl-cross-device on the whole simulator: its terminal, with its own device certificate, is refused
another terminal's topics by the broker, and the simulator's parts all run on TLS with certificates."""

from __future__ import annotations

import subprocess
import time

from drivers.mqtt import TlsFiles
from hostsim.scenarios import Run, fleet_happy
from hostsim.scenarios_central import FORGED, OTHER_DEVICE, acl_cross_device, refusal
from hostsim.services import child_env, forecourt_command
from hostsim.world import Simulator


def test_acl_cross_device_and_a_revoked_device(sim: Simulator, run: Run) -> None:
    acl_cross_device(run)
    assert run.checks == [], "\n".join(run.transcript)
    refused = [line for line in run.transcript if line.endswith("PUBACK 0x87")]
    assert len(refused) == len(FORGED)
    assert all(f"/terminal/{OTHER_DEVICE}/" in line for line in refused)
    # the other device revoked: refused once the broker has reloaded; the terminal's own certificate not
    other = TlsFiles(sim.terminal_tls.ca, *(sim.state / "acl-cross-device" / f"{OTHER_DEVICE}.{x}"
                                            for x in ("pem", "key")))
    sim.authority.revoke(other.cert.read_text())
    sim.reload_broker()
    deadline = time.monotonic() + 10
    while (reason := refusal(sim.broker_port, other)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reason == "TLS: SSLV3_ALERT_CERTIFICATE_REVOKED"
    assert refusal(sim.broker_port, sim.terminal_tls) is None


def test_the_simulator_sells_over_tls_with_client_certificates(sim: Simulator, run: Run) -> None:
    conf = sim.terminal_config.read_text()
    assert "tls = true" in conf and 'cert = "device.pem"' in conf
    assert "require_certificate true" in (sim.state / "mosquitto.conf").read_text()
    fleet_happy(run)                         # authorized by the registry and synced, all through TLS
    assert run.checks == [], "\n".join(run.transcript)
    assert sim.registry_sales(), "the registry stored the sale"


def test_the_operator_revokes_the_simulators_terminal(sim: Simulator, run: Run) -> None:
    """The registry knows the certificate its simulated terminal was provisioned with: `forecourt registry
    device revoke` puts it on the CRL, and the broker refuses the terminal once it has reloaded."""
    run.ready()
    argv = forecourt_command("registry", "device", "revoke", sim.device["id"], "--db", sim.registry_url,
                             "--tls-dir", str(sim.authority.directory))
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    assert "on the CRL" in done.stdout + done.stderr and "nothing was put" not in done.stdout + done.stderr
    sim.reload_broker()
    deadline = time.monotonic() + 10
    while (reason := refusal(sim.broker_port, sim.terminal_tls)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reason == "TLS: SSLV3_ALERT_CERTIFICATE_REVOKED"
