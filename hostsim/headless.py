"""`forecourt sim --headless`: run one scenario on the whole simulated forecourt and report."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError, ForecourtError
from hostsim.scenarios import SCENARIOS, SIM_OPTIONS, Run, sale_view
from hostsim.scenarios_bank import bank_view
from hostsim.world import Simulator

__all__ = ["run_headless", "run_scenario"]


def run_scenario(name: str, state_dir: Path, *, web: bool = False,
                 stay: threading.Event | None = None) -> dict[str, Any]:
    """Play one scenario. web: the back office too (its address and sign-ins on stderr); stay: after the
    scenario, keep everything running until that event is set (Ctrl-C), to look around in the back office."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario '{name}' (see --list-scenarios)", scenario=name)
    with Simulator(state_dir, web=web, **SIM_OPTIONS.get(name, {})) as sim:
        if sim.web is not None:
            print(sim.web.banner(), file=sys.stderr, flush=True)
        run = Run(sim)
        error = None
        try:
            SCENARIOS[name](run)
        except (TimeoutError, ForecourtError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        journal = sim.journal()
        try:
            sales = [sale_view(journal.get(sid)) for sid in run.sale_ids]
        finally:
            journal.close()
        registry = [r for r in (sim.registry_sale(s["id"]) for s in sales) if r is not None]
        receipts = list(sim.printer.receipts)
        acquirer = bank_view(run) if name.startswith("bank-") else None
        if stay is not None:
            print(f"scenario {name} played; the simulator runs on until Ctrl-C", file=sys.stderr, flush=True)
            stay.wait()
    failed = run.checks + ([error] if error else [])
    return {
        "scenario": name, "result": "failed" if failed else "ok", "failures": failed,
        "sales": sales, "receipt": receipts[-1] if receipts else None, "receipts": receipts,
        "registry": registry[0] if len(registry) == 1 else (registry or None),
        **({"acquirer": acquirer} if acquirer is not None else {}),
        "timings": run.timings, "transcript": run.transcript, "state_dir": str(state_dir),
    }


def run_headless(name: str, *, as_json: bool, state_dir: str | None,
                 stay: threading.Event | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    keep = state_dir is not None
    path = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="forecourt-sim-"))
    try:
        result = run_scenario(name, path, web=True, stay=stay)
    finally:
        if not keep and not os.environ.get("FORECOURT_KEEP_STATE"):
            shutil.rmtree(path, ignore_errors=True)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for line in result["transcript"]:
            print(line)
        if result["receipt"]:
            print("\n--- receipt ---\n" + result["receipt"] + "\n---------------")
        print(f"\nscenario {name}: {result['result']}")
        for f in result["failures"]:
            print(f"  failed: {f}")
    sys.stdout.flush()
    return 0 if result["result"] == "ok" else 1
