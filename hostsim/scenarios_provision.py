"""Scenario provision-new-device: a fresh state directory is provisioned from a token, accepted, gets its
configuration and keys, and sells.

Done as the people involved do it, with the command line: the operator creates a one-time token (and, on
the pre-registered path, imports the serial number first), the technician runs `forecourt provision init`
on the new terminal with the claim certificate, the operator accepts the device when init waits for it,
the technician runs `forecourt provision selftest`, then the terminal starts from the terminal.toml init
wrote and a fleet card buys 20 L. The simulator's own terminal is stopped first: one panel, one pump line.
"""

from __future__ import annotations

import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from contracts.pump import PumpState
from firmware.configstore import ConfigStore
from firmware.keyfile import write_key_file
from hostsim.services import Process, child_env, forecourt_command
from provisioning.enroll import write_terminal_toml
from registry.db import open_database
from registry.models import Device, Transaction

__all__ = ["SERIAL", "provision_new_device"]

SERIAL = "SN-2026-0042"
INIT_WAIT = 90


def _forecourt(run: Any, *args: str, stdin: str | None = None) -> str:
    """An operator's or technician's command; it must succeed. Its stdout is returned (a token, a table)."""
    done = subprocess.run(forecourt_command(*args), capture_output=True, text=True, env=child_env(),
                          timeout=120, check=False, input=stdin)
    shown = ["registry.db" if a.startswith("sqlite:") else Path(a).name if a.startswith("/") else a
             for a in args if a != stdin]
    run.log("forecourt " + " ".join(shown) + f" -> exit {done.returncode}")
    if done.returncode != 0:
        raise RuntimeError(f"forecourt {' '.join(args[:2])} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def _claim_dir(sim: Any) -> Path:
    """What a technician carries: the CA and the claim certificate and key (never the CA's key)."""
    folder: Path = sim.state / "technician-claim"
    source = sim.authority.directory
    for name in ("ca.pem", "claim.pem", "claim.key"):
        write_key_file(folder / name, (source / name).read_text())
    return folder


def _prepared_terminal(sim: Any, directory: Path) -> None:
    """The technician's terminal.toml before init: this site's devices and timeouts, no identity yet."""
    simulated = tomllib.loads(sim.terminal_config.read_text())
    write_terminal_toml(directory / "terminal.toml", devices=simulated["devices"],
                        timeouts=simulated.get("timeouts", {}))


def _init(run: Any, directory: Path, token: str, accept_as: str | None) -> dict[str, Any]:
    """`forecourt provision init`; with accept_as, the operator accepts the device once init says it
    waits for it. Returns what init printed and how it ended."""
    sim = run.sim
    args = forecourt_command("provision", "init", "--state-dir", str(directory), "--broker",
                             f"127.0.0.1:{sim.broker_port}", "--token", "-", "--serial", SERIAL,
                             "--claim-dir", str(_claim_dir(sim)), "--wait", str(INIT_WAIT))
    run.log(f"technician: forecourt provision init --serial {SERIAL} --token - (typed on standard input)")
    lines: list[str] = []
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=child_env()) as proc:
        if proc.stdin is not None:
            proc.stdin.write(token + "\n")
            proc.stdin.close()
        for line in proc.stdout or ():
            lines.append(line.rstrip("\n"))
            run.log("init: " + lines[-1])
            if accept_as is not None and line.startswith(f"waiting for an operator to accept {accept_as}"):
                _forecourt(run, "registry", "device", "accept", accept_as, "--db", sim.registry_url)
        code = proc.wait(timeout=INIT_WAIT + 30)
        error = proc.stderr.read() if proc.stderr is not None else ""
    if error.strip():
        run.log("init stderr: " + error.strip()[:300])
    return {"exit": code, "stdout": lines}


def _device(sim: Any, device_id: str) -> dict[str, Any] | None:
    engine, sessions = open_database(sim.registry_url)
    try:
        with sessions() as s:
            device = s.get(Device, device_id)
            sales = s.scalars(select(Transaction).where(Transaction.device_id == device_id)).all()
            if device is None:
                return None
            return {"status": device.status, "serial": device.serial, "fingerprint": device.cert_fingerprint,
                    "sales": [(t.sale_id, t.volume_cl) for t in sales]}
    finally:
        engine.dispose()


def _sell(run: Any, started: int) -> None:
    """A fleet card buys 20 L on pump 1 of the newly provisioned terminal, once it shows its idle screen
    (a screen since `started`: the old terminal's idle screen does not count)."""
    run.sim.panel.wait_for("idle", 60, started)
    run.ready(timeout=60)
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.check(run.sim.pump_line.pump(1).state == PumpState.AUTHORIZED, "pump 1 is authorized")
    run.fill(1, 1, 2000)
    run.wait("thank_you", mark, timeout=30)
    run.remove()


def provision_new_device(run: Any, *, device_id: str = "T-0042", preregistered: bool = False) -> None:
    sim = run.sim
    run.ready(timeout=60)                  # the site runs: the registry is up and has priced the pumps
    if sim.terminal is not None:           # one panel, one pump line: the new terminal replaces the old
        sim.terminal.stop()
        sim.terminal = None
    new = sim.state / "new-terminal"
    new.mkdir(exist_ok=True)
    _prepared_terminal(sim, new)
    station = sim.device["station"]
    if preregistered:
        _forecourt(run, "registry", "device", "import", "-", "--db", sim.registry_url,
                   stdin=f"{SERIAL},{station},{device_id}\n")
    token = _forecourt(run, "registry", "token", "create", "--db", sim.registry_url, "--station", station,
                       "--device-id", device_id).strip().splitlines()[-1]
    init = _init(run, new, token, None if preregistered else device_id)
    run.check(init["exit"] == 0, f"provision init exit 0, got {init['exit']}")
    waited = any(line.startswith("waiting for an operator") for line in init["stdout"])
    run.check(waited != preregistered, "init waited for an operator only when the serial was not registered")
    run.check(any(line.startswith(f"enrolled as {device_id}") for line in init["stdout"]),
              f"enrolled as {device_id}")
    for name in ("device.key", "device.pem", "ca.pem", "config-keys.json", "pek.hex", "dukpt.toml"):
        run.check((new / name).exists() and (new / name).stat().st_mode & 0o077 == 0, f"{name} written, 0600")
    row = _device(sim, device_id)
    run.check(row is not None and row["status"] == "active" and row["serial"] == SERIAL,
              f"registry holds {device_id} active with its serial, got {row}")
    config = str(new / "terminal.toml")
    deadline, selftest = time.monotonic() + 30, ""
    while time.monotonic() < deadline:     # the registry publishes the configuration once it accepted
        command = forecourt_command("provision", "selftest", "--config", config, "--timeout", "5")
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=60,
                              check=False)
        selftest = done.stdout
        if done.returncode == 0:
            break
        time.sleep(1.0)
    for line in selftest.splitlines():
        run.log("selftest: " + line)
    run.check("FAIL" not in selftest and "PASS" in selftest, "selftest passes every device")
    started = sim.panel.mark()
    sim.terminal = Process("terminal", forecourt_command("terminal", "--config", config),
                           sim.state / "new-terminal.log", child_env())
    _sell(run, started)
    deadline = time.monotonic() + 30
    sales: list[tuple[str, int]] = []
    while time.monotonic() < deadline and not sales:
        sales = (_device(sim, device_id) or {}).get("sales", [])
        time.sleep(0.2)
    run.check([v for _, v in sales] == [2000], f"registry stored the 20.00 L sale of {device_id}")
    store = ConfigStore(new, terminal=device_id)
    run.check(store.version >= 1, f"the terminal runs a signed configuration, version {store.version}")
    run.log(f"{device_id} runs configuration version {store.version}")
