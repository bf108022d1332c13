"""deploy/*/install.sh: --dry-run lists the steps and changes nothing; a run into a temporary root (no apt,
no users, no systemctl, no venv) makes the tree with the right modes; a second run changes nothing and
says so; a technician's edit is kept, a wrong mode is put right; the example configuration loads."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.config import load_config
from forecourtcli.main import _check_devices
from registry.db import database_url

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TERMINAL, CENTRAL = DEPLOY / "terminal" / "install.sh", DEPLOY / "central" / "install.sh"
SCRIPTS = [TERMINAL, CENTRAL, DEPLOY / "lib.sh"]
FORECOURT = Path(sys.executable).parent / "forecourt"     # the project's own command, in this venv


def install(script: Path, root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(["bash", str(script), "--no-system", "--no-venv", "--root", str(root), *options],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (mode(p), p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name + "/" + p.name)
def test_scripts_parse(script: Path) -> None:
    run = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    run = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], check=False, capture_output=True,
                         text=True, timeout=60, cwd=DEPLOY)
    assert run.returncode == 0, run.stdout


def test_terminal_dry_run_lists_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    out = install(TERMINAL, tmp_path, "--dry-run").stdout
    for step in ("directory /opt/forecourt (0755 root:root)",
                 "directory /etc/forecourt (0750 root:forecourt)",
                 "directory /var/lib/forecourt (0750 forecourt:forecourt)",
                 "file /etc/forecourt/terminal.toml (0640)",
                 "file /var/lib/forecourt/terminal.toml (0600)", "file /etc/sysusers.d/forecourt.conf",
                 "file /etc/systemd/system/forecourt-terminal.service"):
        assert f"would: {step}" in out, out
    assert "$ install -d -m 0750" in out                       # and the command it would run
    assert "--dry-run: nothing done" in out
    assert list(tmp_path.iterdir()) == []


def test_terminal_install_tree_modes_and_a_second_run(tmp_path: Path) -> None:
    first = install(TERMINAL, tmp_path).stdout
    assert "changed: directory /var/lib/forecourt (0750 forecourt:forecourt)" in first
    assert mode(tmp_path / "opt/forecourt") == 0o755
    assert mode(tmp_path / "etc/forecourt") == 0o750
    assert mode(tmp_path / "var/lib/forecourt") == 0o750
    assert mode(tmp_path / "etc/forecourt/terminal.toml") == 0o640
    assert mode(tmp_path / "etc/forecourt/terminal.env") == 0o640
    assert mode(tmp_path / "var/lib/forecourt/terminal.toml") == 0o600
    assert mode(tmp_path / "etc/systemd/system/forecourt-terminal.service") == 0o644
    unit = (tmp_path / "etc/systemd/system/forecourt-terminal.service").read_text()
    assert unit == (DEPLOY / "terminal/forecourt-terminal.service").read_text()
    before = tree(tmp_path)
    second = install(TERMINAL, tmp_path).stdout
    assert "nothing changed" in second and "changed:" not in second.replace("nothing changed", "")
    assert tree(tmp_path) == before


def test_terminal_rerun_keeps_edits_and_puts_modes_right(tmp_path: Path) -> None:
    install(TERMINAL, tmp_path)
    site = tmp_path / "etc/forecourt/terminal.toml"
    site.write_text(site.read_text() + "\n# edited on site\n")
    site.chmod(0o644)                                              # other users must not read it
    unit = tmp_path / "etc/systemd/system/forecourt-terminal.service"
    unit.write_text("[Unit]\n")                                    # ours: put back
    out = install(TERMINAL, tmp_path).stdout
    assert "ok: file /etc/forecourt/terminal.toml kept as edited here" in out
    assert "changed: mode of /etc/forecourt/terminal.toml: 0640" in out
    assert "changed: file /etc/systemd/system/forecourt-terminal.service (new content)" in out
    assert site.read_text().endswith("# edited on site\n") and mode(site) == 0o640
    assert unit.read_text() == (DEPLOY / "terminal/forecourt-terminal.service").read_text()


def test_example_terminal_configuration_loads_once_provisioned(tmp_path: Path) -> None:
    """What provisioning adds ([terminal], [mqtt]) plus the example is a configuration the terminal takes."""
    example = (DEPLOY / "terminal/terminal.toml.example").read_text()
    path = tmp_path / "terminal.toml"
    path.write_text('[terminal]\nid = "T0001"\nstation = "ST01"\nstate_dir = "."\n\n'
                    '[mqtt]\nhost = "registry.example"\nport = 8883\ntls = true\n\n' + example)
    cfg = load_config(path, profile="pi")
    _check_devices(cfg)
    assert cfg.state_dir == tmp_path.resolve() and cfg.devices.pump_line == "/dev/ttyAMA0"


def test_usage_errors() -> None:
    run = subprocess.run(["bash", str(TERMINAL), "--bogus"], check=False, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2 and "unknown option --bogus" in run.stderr
    run = subprocess.run(["bash", str(TERMINAL), "--help"], check=False, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0 and "--dry-run" in run.stdout


@pytest.mark.skipif(not FORECOURT.exists(), reason="the project's forecourt command is not in this venv")
def test_central_install_keys_modes_idempotence_and_postgresql(tmp_path: Path) -> None:
    dry = install(CENTRAL, tmp_path, "--dry-run", "--forecourt", str(FORECOURT)).stdout
    assert "would: certificate authority /var/lib/forecourt/pki" in dry and list(tmp_path.iterdir()) == []
    install(CENTRAL, tmp_path, "--forecourt", str(FORECOURT), "--broker-host", "registry.example")
    pki = tmp_path / "var/lib/forecourt/pki"
    assert mode(pki) == 0o700 and mode(tmp_path / "var/lib/forecourt/broker") == 0o700
    for key in ("ca.key", "broker.key", "registry.key", "claim.key"):
        assert mode(pki / key) == 0o600, key
    assert mode(tmp_path / "etc/forecourt") == 0o750
    conf = tmp_path / "etc/forecourt/mosquitto.conf"
    assert mode(conf) == 0o640
    text = conf.read_text()
    assert "listener 8883 0.0.0.0" in text and "require_certificate true" in text
    assert f"acl_file {pki}/broker.acl" in text and (pki / "broker.acl").is_file()
    env = tmp_path / "etc/forecourt/registry.env"
    assert mode(env) == 0o640
    assert env.read_text() == "FORECOURT_DB=sqlite:////var/lib/forecourt/registry.db\nFORECOURT_MQTT=localhost:8883\n"
    for unit in ("forecourt-registry.service", "forecourt-broker.service", "forecourt-broker-reload.timer"):
        assert (tmp_path / "etc/systemd/system" / unit).is_file()
    before = tree(tmp_path)
    again = install(CENTRAL, tmp_path, "--forecourt", str(FORECOURT)).stdout
    assert "nothing changed" in again and "changed:" not in again.replace("nothing changed", "")
    assert tree(tmp_path) == before                                # the same authority, the same files

    pg = install(CENTRAL, tmp_path, "--forecourt", str(FORECOURT), "--postgresql").stdout
    assert "changed: registry database: PostgreSQL" in pg
    url = env.read_text().splitlines()[0].removeprefix("FORECOURT_DB=")
    parsed = database_url(url)                 # peer authentication on the local socket: no password anywhere
    assert parsed.drivername == "postgresql+psycopg" and parsed.password is None
    assert parsed.username == parsed.database == "forecourt"
    last = install(CENTRAL, tmp_path, "--forecourt", str(FORECOURT), "--postgresql").stdout
    assert "nothing changed" in last


def test_root_is_needed_for_the_system_steps(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("runs as root here")
    run = subprocess.run(["bash", str(TERMINAL), "--root", str(tmp_path)], check=False, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2 and "run as root" in run.stderr


def test_a_symbolic_link_planted_in_the_state_directory_is_refused(tmp_path: Path) -> None:
    """The forecourt user owns /var/lib/forecourt: a link there must not make root chmod another file."""
    root = tmp_path / "root"
    root.mkdir()
    install(TERMINAL, root)
    victim = tmp_path / "victim"
    victim.write_text("x")
    victim.chmod(0o755)
    planted = root / "var/lib/forecourt/terminal.toml"
    planted.unlink()
    planted.symlink_to(victim)
    again = subprocess.run(["bash", str(TERMINAL), "--no-system", "--no-venv", "--root", str(root)],
                           check=False, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "symbolic link" in again.stdout + again.stderr
    assert mode(victim) == 0o755
