"""The `forecourt` command: help, exit codes, one clear line on user error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forecourtcli.main import EXIT_OK, EXIT_USAGE, main


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "forecourtcli", *args], check=False, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("sub", ["sim", "terminal", "registry", "broker-config"])
def test_each_subcommand_has_help_with_exit_codes(sub: str) -> None:
    out = cli(sub, "--help")
    assert out.returncode == 0
    assert "exit codes" in out.stdout and sub in out.stdout


def test_unknown_subcommand_is_usage_error() -> None:
    out = cli("fly")
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr


def test_list_scenarios_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list-scenarios"]) == EXIT_OK
    names = capsys.readouterr().out.splitlines()
    assert names[:3] == ["fleet-happy", "fleet-declined-limit", "fleet-wrong-pin"]
    assert "pump-faults" in names and len(names) == len(set(names))


def test_unknown_scenario_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--headless", "--scenario", "no-such"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such" in err


def test_broker_config_writes_loopback_listener(tmp_path: Path) -> None:
    target = tmp_path / "mosquitto.conf"
    assert main(["broker-config", "--port", "18830", "-o", str(target)]) == EXIT_OK
    text = target.read_text()
    assert "listener 18830 127.0.0.1" in text and "persistence false" in text


def test_missing_terminal_config_is_usage_error(tmp_path: Path) -> None:
    out = cli("terminal", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == EXIT_USAGE
    assert out.stderr.startswith("forecourt: config file not found") and out.stderr.count("\n") == 1


def test_registry_bad_mqtt_address_is_usage_error(tmp_path: Path) -> None:
    out = cli("registry", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--mqtt", "localhost", "--state-dir",
              str(tmp_path))
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr
