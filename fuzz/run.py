"""`make fuzz`: every target for FUZZ_SECONDS each, one process per target, then a table of figures.

    python -m fuzz.run [--seconds N] [--engine atheris|hypothesis] [--jobs N] [TARGET ...]

Prints per target the engine, the inputs tried, the distinct failures and the time; then each failure
with its shortest input (hex) and where it was raised, KNOWN when fuzz/known.py has it reported, else
NEW. Work, corpora and libFuzzer logs are kept in .state/fuzz/<target>/. Exit code 1 when a failure is
new, 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fuzz import all_targets
from fuzz.known import KNOWN

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state" / "fuzz"


def default_engine() -> str:
    return "atheris" if importlib.util.find_spec("atheris") is not None else "hypothesis"


def _summary(workdir: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((workdir / "summary.json").read_text())
    except (OSError, ValueError):
        return {"inputs": 0, "failing_inputs": 0, "findings": {}, "done": False, "seconds": 0.0}
    return doc


def _start(name: str, seconds: float, engine: str) -> tuple[subprocess.Popen[bytes], Path]:
    workdir = STATE / name
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "summary.json").unlink(missing_ok=True)
    log = open(workdir / "fuzz.log", "wb")      # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "fuzz.worker", name, str(seconds), str(workdir), engine],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, workdir


def _finish(name: str, proc: subprocess.Popen[bytes], workdir: Path, seconds: float) -> dict[str, Any]:
    try:
        proc.wait(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    doc = _summary(workdir)
    if not doc.get("done"):      # the process died: a native crash, libFuzzer's timeout or out of memory
        artifacts = sorted(p.name for p in workdir.iterdir() if p.name.split("-")[0] in
                           ("crash", "timeout", "oom", "leak"))
        doc.setdefault("findings", {})[f"fuzzing process ended with code {proc.returncode}"] = {
            "input": "", "count": 1, "message": f"see {workdir / 'fuzz.log'} {' '.join(artifacts)}"}
    doc["target"] = name
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--seconds", type=float, default=180.0, help="time per target (default 180)")
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), default=None,
                        help="default: atheris when installed, else hypothesis")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (default 1)")
    args = parser.parse_args(argv)
    known = {t.name for t in all_targets()}
    names = args.targets or [t.name for t in all_targets()]
    unknown = sorted(set(names) - known)
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    engine = args.engine or default_engine()
    print(f"fuzz: {len(names)} targets, {args.seconds:g} s each, engine {engine}, {args.jobs} at a time",
          flush=True)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    pending = list(names)
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            name = pending.pop(0)
            running.append((name, *_start(name, args.seconds, engine)))
        name, proc, workdir = running.pop(0)
        doc = _finish(name, proc, workdir, args.seconds)
        results.append(doc)
        print(f"  {name:<20} {doc.get('engine', engine):<10} inputs {doc['inputs']:>10}  "
              f"distinct failures {len(doc['findings']):>2}  failing inputs {doc['failing_inputs']:>8}  "
              f"{doc['seconds']:>6} s", flush=True)
    print(f"fuzz: {sum(d['inputs'] for d in results)} inputs in {time.monotonic() - started:.0f} s")
    failures = [(d["target"], sig, f) for d in results for sig, f in sorted(d["findings"].items())]
    new = 0
    for target, sig, finding in failures:
        reported = any(k.matches_signature(sig) for k in KNOWN.get(target, ()))
        new += not reported
        print(f"{'KNOWN' if reported else 'NEW'} {target}: {sig} ({finding['count']} inputs)\n"
              f"    input  {finding['input'][:400]}\n    error  {finding['message']}")
    print(f"fuzz: {len(failures)} distinct failures in {len({t for t, _, _ in failures})} targets, "
          f"{new} not yet reported (fuzz/known.py)")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
