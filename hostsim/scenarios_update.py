"""Scenario update-rollback: a good update is installed and kept, then a bad one fails its health check and
the terminal returns to the previous version; the rollout halts by itself.

The releases are built, added and rolled out with the command line an operator uses (`forecourt release
build`, `forecourt registry release add`, `forecourt registry rollout start`), signed with the registry's
configuration key, which the terminal trusts. The simulator restarts the terminal when it exits asking
for it, as systemd does on the device (Simulator.supervise_terminal).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from firmware.update_slots import FACTORY, Slots
from hostsim.services import child_env, forecourt_command
from registry.configs import KEY_FILE
from registry.db import open_database
from registry.models import Rollout, RolloutDevice

__all__ = ["BAD", "GOOD", "Supervised", "release", "update_rollback"]

GOOD, BAD = "1.1.0", "1.2.0"


def _forecourt(run: Any, *args: str) -> str:
    """Run the operator's command; its first line goes to the transcript."""
    done = subprocess.run(forecourt_command(*args), capture_output=True, text=True, env=child_env(),
                          timeout=60, check=False)
    if done.returncode != 0:
        raise TimeoutError(f"forecourt {args[0]} {args[1]} failed: {done.stderr.strip()[:200]}")
    shown = ("registry.db" if a.startswith("sqlite:") else Path(a).name if a.startswith("/") else a
             for a in args)
    run.log("operator: forecourt " + " ".join(shown))
    return done.stdout


def release(run: Any, version: str, health: str) -> None:
    """Build, add and roll out a release with the operator's commands (first wave 10 %, halt past 20 %)."""
    sim = run.sim
    src = sim.state / f"release-{version}"
    src.mkdir(exist_ok=True)
    (src / "health.py").write_text(health)
    (src / "VERSION").write_text(version + "\n")
    bundle = sim.state / f"forecourt-{version}.bundle"
    reg = sim.state / "registry"
    _forecourt(run, "release", "build", "--version", version, "--dir", str(src), "-o", str(bundle),
               "--key", str(reg / KEY_FILE), "--deadline", "30")
    _forecourt(run, "registry", "release", "add", str(bundle), "--db", sim.registry_url,
               "--state-dir", str(reg))
    _forecourt(run, "registry", "rollout", "start", version, "--percent", "10", "--halt-at", "20",
               "--db", sim.registry_url)


def _device_status(run: Any, version: str) -> tuple[str, str]:
    """The rollout's status and this terminal's status in it, as the registry has them."""
    engine, sessions = open_database(run.sim.registry_url)
    try:
        with sessions() as s:
            rollout_id = s.scalar(select(Rollout.id).where(Rollout.version == version))
            if rollout_id is None:
                return "", ""
            # The device's row first, then the rollout: both change in one commit, and SQLite reads each
            # SELECT on its own, so the other order could see the report without the decision it made.
            device = run.sim.device["id"]
            row = s.scalar(select(RolloutDevice.status).where(RolloutDevice.rollout_id == rollout_id,
                                                              RolloutDevice.device_id == device))
            status = s.scalar(select(Rollout.status).where(Rollout.id == rollout_id))
            return status or "", row or ""
    finally:
        engine.dispose()


class Supervised:
    """Restarts of the terminal made while a scenario waits, and the panel's mark at the last one."""

    def __init__(self, run: Any) -> None:
        self.run, self.restarts, self.mark = run, 0, run.sim.panel.mark()

    def poll(self) -> None:
        if self.run.sim.supervise_terminal():
            self.restarts += 1
            self.mark = self.run.sim.panel.mark()
            self.run.log(f"supervisor: the terminal exited to restart; started again ({self.restarts})")

    def until_reported(self, version: str, wanted: str, timeout: float = 90.0) -> str:
        """Until the registry has `wanted` for this terminal in the rollout of version; the rollout's
        status."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            rollout, status = _device_status(self.run, version)
            if status == wanted:
                return rollout
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {version}: the registry has {status or 'nothing'}, not {wanted}")
            time.sleep(0.1)

    def serving(self, timeout: float = 60.0) -> None:
        """Until the terminal shows its idle screen (online) since its last restart, and stays up."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            try:
                self.run.sim.panel.wait_for("idle", 0.5, since=self.mark)
                time.sleep(1.0)
                self.poll()
                if self.run.sim.terminal is not None and self.run.sim.terminal.poll() is None:
                    return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def _terminal_state(run: Any) -> tuple[str, dict[str, Any]]:
    slots = Slots(Path(run.sim.terminal_config.parent))
    return slots.running(), json.loads(slots.state_file.read_text()) if slots.state_file.exists() else {}


def _roll_out(run: Any, version: str, health: str,
              wanted: str) -> tuple[Supervised, str, str, dict[str, Any]]:
    """Release version, wait until the registry has `wanted` from this terminal and the terminal serves
    again: the supervisor, the rollout's status, the version that runs and the updater's state."""
    supervisor = Supervised(run)
    release(run, version, health)
    rollout = supervisor.until_reported(version, wanted)
    supervisor.serving()
    running, state = _terminal_state(run)
    run.log(f"terminal runs {running}; registry: rollout of {version} {rollout}")
    return supervisor, rollout, running, state


def update_rollback(run: Any) -> None:
    run.ready()
    running, _ = _terminal_state(run)
    run.check(running == FACTORY, f"the terminal starts on its installed version {FACTORY}, got {running}")

    supervisor, rollout, running, _ = _roll_out(run, GOOD, "raise SystemExit(0)\n", "installed")
    run.check(supervisor.restarts == 1, f"one restart to install {GOOD}, got {supervisor.restarts}")
    run.check(running == GOOD, f"the terminal runs {GOOD} after a healthy start, got {running}")
    run.check(rollout == "completed", f"the rollout of {GOOD} completed, got {rollout}")

    supervisor, rollout, running, state = _roll_out(
        run, BAD, "import sys\nsys.exit(1)   # this release cannot work here\n", "rolled_back")
    run.check(supervisor.restarts == 2, f"two restarts: to try {BAD}, and back; got {supervisor.restarts}")
    run.check(running == GOOD, f"the terminal is back on {GOOD}, got {running}")
    run.check(state.get("failed") == [BAD], f"{BAD} is remembered as failed, got {state.get('failed')}")
    run.check(state.get("trying") is None and not state.get("reports"),
              "nothing is being tried and every report was sent")
    run.check(rollout == "halted", f"the rollout of {BAD} halted by itself, got {rollout}")
    time.sleep(3.0)                       # the retained offer (withdrawn) must not start it again
    supervisor.poll()
    run.check(supervisor.restarts == 2, "the failed version is not tried again")
    for line in _forecourt(run, "registry", "rollout", "status", "--db", run.sim.registry_url).splitlines():
        run.log("  " + line)
