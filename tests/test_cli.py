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


@pytest.mark.parametrize("mode", [["--headless"], []])
def test_unknown_scenario_is_one_line(capsys: pytest.CaptureFixture[str], mode: list[str]) -> None:
    assert main(["sim", *mode, "--scenario", "no-such"]) == EXIT_USAGE     # with a window or without
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such" in err and "fleet-happy" in err


def test_sim_with_a_window_plays_the_scenario_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import hostsim.window

    asked: dict[str, object] = {}
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(hostsim.window, "run_window", lambda **kw: asked.update(kw) or 0)
    assert main(["sim", "--scenario", "bank-happy"]) == EXIT_OK
    assert asked == {"state_dir": None, "scenario": "bank-happy"}


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


# -- every option naming a database, a broker, a device or a file is checked (issue 10) --------------------

def one_line_usage_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == EXIT_USAGE, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("forecourt: ")
    return out.stderr


def test_terminal_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(b'[terminal]\nid = "T-0001"\nstation = "ST-\xe9"\n')
    assert "not UTF-8" in one_line_usage_error(cli("terminal", "--config", str(path)))


def test_terminal_config_with_a_bad_port_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[terminal]\nid = "T-0001"\nstation = "ST-1"\n[mqtt]\nport = 99999\n')
    assert "mqtt.port" in one_line_usage_error(cli("terminal", "--config", str(path)))


@pytest.mark.parametrize("db", ["bogus://x", "sqlite+bogus:///x.db", "mysql://u@h/x", "not a url", "",
                                "sqlite:////nonexistent-forecourt-dir/sub/r.db",
                                "postgresql://registry:s3cret-pw@127.0.0.1:1/forecourt"])
def test_registry_bad_database_is_one_line(tmp_path: Path, db: str) -> None:
    err = one_line_usage_error(cli("registry", "--db", db, "--mqtt", "127.0.0.1:1", "--state-dir",
                                   str(tmp_path / "state")))
    assert "database" in err and "s3cret-pw" not in err


@pytest.mark.parametrize("mqtt", [":0", ":99999", "host:-1", "a b:1883", ":", "localhost", "[::1", "h/x:1"])
def test_registry_bad_broker_is_one_line(tmp_path: Path, mqtt: str) -> None:
    err = one_line_usage_error(cli("registry", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--mqtt", mqtt,
                                   "--state-dir", str(tmp_path / "state")))
    assert "--mqtt" in err
    assert not (tmp_path / "r.db").exists()                    # refused before anything was made


def test_registry_state_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    err = one_line_usage_error(cli("registry", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--mqtt",
                                   "127.0.0.1:1", "--state-dir", str(tmp_path / "file" / "sub")))
    assert "--state-dir" in err


def test_registry_seed_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_bytes(b'[[stations]]\nid = "\xff"\n')
    err = one_line_usage_error(cli("registry", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--mqtt",
                                   "127.0.0.1:1", "--state-dir", str(tmp_path / "s"), "--seed", str(seed)))
    assert "seed" in err


@pytest.mark.parametrize("args", [("--port", "-1"), ("--port", "99999"), ("--port", "0x50"),
                                  ("--bind", "0.0.0.0 evil"), ("--output", "/nonexistent-forecourt/m.conf")])
def test_broker_config_bad_option_is_a_usage_error(args: tuple[str, ...]) -> None:
    out = cli("broker-config", *args)
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr


def test_nul_in_a_path_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["terminal", "--config", "a\x00b.toml"]) == EXIT_USAGE
    assert main(["broker-config", "--data-dir", "d\x00"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--config" in err and "--data-dir" in err


@pytest.mark.parametrize(("line", "key"), [('[devices]\nprinter = "lpt://1"', "devices.printer"),
                                           ('[devices]\ncard_reader = "/dev/ttyUSB0"', "devices.card_reader"),
                                           ('[devices]\npanel = "headless://"', "devices.panel"),
                                           ('[devices]\npump_line = "bogus://x"', "devices.pump_line"),
                                           ('[bank]\nmagstripe = "file:///dev/ttyS0"', "bank.magstripe")])
def test_terminal_device_url_no_backend_opens_is_one_line(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[terminal]\nid = "T-0001"\nstation = "ST-1"\n{line}\n')
    assert key in one_line_usage_error(cli("terminal", "--config", str(path)))


@pytest.mark.parametrize("sub", [("terminal", "--config", "t.toml"), ("registry", "--db", "sqlite:///r.db")])
def test_unknown_log_level_is_a_usage_error(sub: tuple[str, ...]) -> None:
    out = cli(*sub, "--log-level", "LOUD")
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr and "log level" in out.stderr
