"""Fuzz one target for a time budget, in a process of its own; fuzz/run.py starts one per target.

    python -m fuzz.worker TARGET SECONDS WORKDIR [atheris|hypothesis]

atheris (libFuzzer, coverage guided: the project's modules are instrumented as they are imported) keeps
its corpus in WORKDIR/corpus, so a later run starts from what an earlier one found. hypothesis is the
fallback where atheris does not install: random and mutated inputs in batches until the time is up.
Each distinct failure (exception type and project line) is kept with its shortest input in
WORKDIR/summary.json, rewritten at most once a second and when the budget is spent.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from fuzz.harness import Target, check, signature

__all__ = ["Worker", "main"]

INSTRUMENTED = ["contracts", "drivers", "firmware", "hostsim", "iso8583", "tomllib"]


class Worker:
    """Counts inputs, keeps one shortest example per distinct failure, writes the summary."""

    def __init__(self, target: Target, seconds: float, workdir: Path, engine: str) -> None:
        self.target, self.workdir, self.engine = target, workdir, engine
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.inputs = 0
        self.failing = 0
        self.findings: dict[str, dict[str, Any]] = {}
        self._written = 0.0

    def one(self, data: bytes) -> None:
        if len(data) > self.target.max_len:
            return
        self.inputs += 1
        try:
            check(self.target, data)
        except Exception as exc:  # noqa: BLE001 - every other exception is what we look for
            self.failing += 1
            sig = signature(exc)
            known = self.findings.get(sig)
            if known is None or len(data) * 2 < len(known["input"]):
                self.findings[sig] = {"input": data.hex(), "message": str(exc)[:120],
                                      "count": (known or {}).get("count", 0)}
                self.write()
            self.findings[sig]["count"] += 1
        now = time.monotonic()
        if now >= self.deadline:
            self.write(done=True)
            atexit._run_exitfuncs()   # temporary files of the targets
            os._exit(0)               # libFuzzer has no "stop now" call; the summary is written
        if now - self._written > 1.0:
            self.write()

    def write(self, *, done: bool = False) -> None:
        self._written = time.monotonic()
        doc = {"target": self.target.name, "engine": self.engine, "inputs": self.inputs,
               "failing_inputs": self.failing, "seconds": round(self._written - self.start, 1),
               "done": done, "findings": self.findings}
        tmp = self.workdir / "summary.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.workdir / "summary.json")


def _atheris(name: str, seconds: float, workdir: Path) -> None:
    atheris: Any = importlib.import_module("atheris")

    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz import by_name
        target = by_name(name)
        for seed in target.seeds():      # a first run imports what the target imports lazily, instrumented
            with contextlib.suppress(Exception):     # counted when libFuzzer runs the seed again
                check(target, seed)
    corpus = workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    worker = Worker(target, seconds, workdir, "atheris")
    worker.write()
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds) + 60}", f"-max_len={target.max_len}",
                   "-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1",
                   f"-artifact_prefix={workdir}/", str(corpus)], worker.one)
    atheris.Fuzz()


def _hypothesis(name: str, seconds: float, workdir: Path) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    from fuzz import by_name
    from fuzz.strategies import inputs

    target = by_name(name)
    worker = Worker(target, seconds, workdir, "hypothesis")
    @settings(max_examples=5000, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(inputs(target))
    def batch(data: bytes) -> None:
        worker.one(data)

    worker.write()
    while True:
        batch()


def main(argv: list[str]) -> None:
    name, seconds, workdir = argv[0], float(argv[1]), Path(argv[2])
    engine = argv[3] if len(argv) > 3 else "atheris"
    workdir.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.CRITICAL)          # the parsers log every refused input
    (_atheris if engine == "atheris" else _hypothesis)(name, seconds, workdir)


if __name__ == "__main__":
    main(sys.argv[1:])
