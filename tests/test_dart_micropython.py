"""The DART codec under MicroPython: tests/micropython/run_vectors.mjs runs dart_vectors.py against
drivers/pump/dart.py in the MicroPython WebAssembly port (npm package pinned in tests/micropython),
as CI does.
The same vectors also run here under CPython, so a failure points at MicroPython, not at the vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "micropython"
REPO = HERE.parent.parent
PACKAGE = "@micropython/micropython-webassembly-pyscript"


def _npm_install() -> None:
    """npm ci into tests/micropython/node_modules when the package is missing or not the locked version."""
    installed = HERE / "node_modules" / PACKAGE / "package.json"
    lock = json.loads((HERE / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/" + PACKAGE]["version"]
    if installed.exists() and json.loads(installed.read_text()).get("version") == wanted:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (scripts/setup.sh installs nodejs and npm)")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail("npm ci failed in tests/micropython:\n" + done.stdout + done.stderr)


def test_vectors_pass_under_cpython() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dart_vectors", HERE / "dart_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    passed, failed = module.run()
    assert failed == 0 and passed >= 10


def test_vectors_pass_under_micropython() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/setup.sh installs nodejs and npm)")
    _npm_install()
    done = subprocess.run([node, str(HERE / "run_vectors.mjs")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "MicroPython" in done.stdout
    assert " passed, 0 failed" in done.stdout, out
