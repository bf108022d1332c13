"""deploy/**/*.service|timer: `systemd-analyze verify` passes on every unit (rendered with its /opt/forecourt
paths into a temporary directory where an executable stands in for the venv's forecourt), and catches a
broken copy; the command lines are the CLI's; the terminal unit restarts on the updater's exit code."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware.updater import RESTART_EXIT
from forecourtcli.main import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = sorted([*DEPLOY.glob("*/*.service"), *DEPLOY.glob("*/*.timer")])
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="no systemd-analyze (Debian package systemd)")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key may repeat, e.g. DeviceAllow=)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def render(units: list[Path], into: Path) -> list[Path]:
    """The units with /opt/forecourt moved under `into`, where a stand-in executable is the venv's forecourt
    (systemd-analyze verify checks that each Exec*= program exists and is executable)."""
    prefix = into / "opt" / "forecourt"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    fake = prefix / "bin" / "forecourt"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    out = []
    for unit in units:
        target = into / unit.name
        target.write_text(unit.read_text().replace("/opt/forecourt/", f"{prefix}/"))
        out.append(target)
    return out


def verify(paths: list[Path]) -> tuple[int, str]:
    """systemd-analyze verify; its exit code and what it said. systemd 252 (bookworm) exits 0 on an unknown
    key or a value it cannot parse and only warns, so anything on stderr counts as a failure too.
    --man=no: the Documentation=man: pages need not be installed here."""
    assert ANALYZE is not None
    run = subprocess.run([ANALYZE, "--man=no", "verify", *[p.name for p in paths]], cwd=paths[0].parent,
                         check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""})
    return run.returncode, (run.stdout + run.stderr).strip()


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    (path,) = [u for u in UNITS if u.name == name]
    return parse_unit(path.read_text())


def test_the_units_are_there() -> None:
    assert {u.name for u in UNITS} >= {"forecourt-terminal.service", "forecourt-registry.service",
                                       "forecourt-broker.service", "forecourt-broker-reload.timer"}


@needs_analyze
def test_every_unit_verifies(tmp_path: Path) -> None:
    code, said = verify(render(UNITS, tmp_path))
    assert (code, said) == (0, "")


@needs_analyze
@pytest.mark.parametrize("breakage", [
    ("WatchdogSec=30", "WatchdogSek=30"),                     # a misspelt key: only a warning from systemd
    ("Type=notify", "Type=notifyy"),                          # a value it cannot parse: a warning too
    ("[Service]", "[Servic]"),                                # no [Service]: an error
    ("DeviceAllow=char-spi rw", "DeviceAllow=char-spi rwz"),
    ("ExecStart=/opt/forecourt/bin/forecourt", "ExecStart=/opt/forecourt/bin/forecourtx"),   # no program
])
def test_a_broken_unit_is_caught(tmp_path: Path, breakage: tuple[str, str]) -> None:
    good = next(u for u in UNITS if u.name == "forecourt-terminal.service")
    old, new = breakage
    assert old in good.read_text()
    broken = tmp_path / "src" / good.name
    broken.parent.mkdir()
    broken.write_text(good.read_text().replace(old, new, 1))
    code, said = verify(render([broken], tmp_path / "out"))
    assert code != 0 or said, "systemd-analyze took a broken unit"


def test_terminal_unit_is_notify_with_a_watchdog_and_restarts_on_the_update_code() -> None:
    svc = unit("forecourt-terminal.service")["Service"]
    assert svc["Type"] == ["notify"] and svc["NotifyAccess"] == ["main"]
    assert 10 <= int(svc["WatchdogSec"][0]) <= 120
    assert svc["Restart"] == ["on-failure"]
    assert str(RESTART_EXIT) in svc["RestartForceExitStatus"][0].split()
    assert svc["User"] == ["forecourt"] and svc["NoNewPrivileges"] == ["yes"]
    assert svc["ProtectSystem"] == ["strict"] and svc["ReadWritePaths"] == ["/var/lib/forecourt"]
    assert svc["ProtectHome"] == ["yes"] and svc["PrivateTmp"] == ["yes"]
    assert svc["StandardOutput"] == ["journal"] and svc["LimitCORE"] == ["0"]
    assert "sudo" not in svc["SupplementaryGroups"][0].split()
    assert svc["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in svc["DeviceAllow"]}
    assert allowed >= {"char-ttyAMA", "char-ttyUSB", "char-gpiochip", "char-spi", "char-usb"}


def test_registry_and_broker_units() -> None:
    reg = unit("forecourt-registry.service")["Service"]
    assert reg["Type"] == ["notify"] and reg["WatchdogSec"] and reg["User"] == ["forecourt"]
    assert reg["EnvironmentFile"] == ["/etc/forecourt/registry.env"]
    broker = unit("forecourt-broker.service")["Service"]
    assert broker["ExecStart"] == ["/usr/sbin/mosquitto -c /etc/forecourt/mosquitto.conf"]
    assert broker["ExecReload"] and broker["User"] == ["forecourt"]
    assert unit("forecourt-broker-reload.timer")["Timer"]["OnCalendar"] == ["daily"]


def _command(argv: list[str]) -> None:
    """ExecStart's arguments are a command line the CLI takes (parsed, not run)."""
    assert argv[0] == "/opt/forecourt/bin/forecourt"
    build_parser().parse_args(argv[1:])


def test_exec_lines_are_command_lines_the_cli_takes() -> None:
    _command(shlex.split(unit("forecourt-terminal.service")["Service"]["ExecStart"][0]))
    line = unit("forecourt-registry.service")["Service"]["ExecStart"][0]
    env = {"FORECOURT_DB": "sqlite:////var/lib/forecourt/registry.db", "FORECOURT_MQTT": "localhost:8883"}
    for name, value in env.items():
        line = line.replace("${" + name + "}", value)
    args = shlex.split(line)
    _command(args)
    assert args[args.index("--tls-dir") + 1] == "/var/lib/forecourt/pki"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-sysusers") is None,
                    reason="systemd-sysusers --root writes files owned by root")
def test_terminal_user_gets_only_the_device_groups(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = DEPLOY / "terminal" / "forecourt.sysusers"
    run = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(conf)], check=False,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    (entry,) = [line for line in passwd.splitlines() if line.startswith("forecourt:")]
    assert entry.endswith(":/var/lib/forecourt:/usr/sbin/nologin")
    groups = {line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()
              if "forecourt" in line.split(":")[3].split(",")}
    assert groups == {"dialout", "gpio", "spi", "lp"}
