"""provision-new-device: a fresh state directory is provisioned from a token against the real TLS broker and
registry, accepted (by an operator, or at once for a pre-registered serial), gets its configuration and
keys, passes its selftest and sells."""

from __future__ import annotations

import pytest

from hostsim.scenarios import Run
from hostsim.scenarios_provision import provision_new_device


def test_a_new_device_waits_for_the_operator_then_sells(run: Run) -> None:
    provision_new_device(run)
    assert run.checks == [], "\n".join(run.transcript[-60:])


@pytest.mark.parametrize("device_id", ["T-0077"])
def test_a_preregistered_serial_is_accepted_at_once_and_sells(run: Run, device_id: str) -> None:
    provision_new_device(run, device_id=device_id, preregistered=True)
    assert run.checks == [], "\n".join(run.transcript[-60:])


def test_the_new_device_rotates_its_certificate_through_the_registry(run: Run) -> None:
    import subprocess

    from hostsim.services import child_env, forecourt_command
    from registry.db import open_database
    from registry.models import Device

    provision_new_device(run)
    assert run.checks == [], "\n".join(run.transcript[-60:])
    if run.sim.terminal is not None:
        run.sim.terminal.stop()
        run.sim.terminal = None
    config = str(run.sim.state / "new-terminal" / "terminal.toml")

    def forecourt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(forecourt_command(*args), capture_output=True, text=True, env=child_env(),
                              timeout=120, check=False)

    rotated = forecourt("provision", "rotate-cert", "--config", config)
    assert rotated.returncode == 0, rotated.stderr
    fingerprint = rotated.stdout.split("fingerprint ")[1].split(",")[0]
    engine, sessions = open_database(run.sim.registry_url)
    try:
        with sessions() as s:
            device = s.get(Device, "T-0042")
            assert device is not None and device.cert_fingerprint == fingerprint
    finally:
        engine.dispose()
    status = forecourt("provision", "status", "--config", config)
    assert status.returncode == 0 and fingerprint in status.stdout
    assert "reachable (TLS, device certificate)" in status.stdout and "PRIVATE" not in status.stdout
