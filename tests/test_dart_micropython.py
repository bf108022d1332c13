"""The DART codec under MicroPython: tests/micropython/run_vectors.mjs runs dart_vectors.py against
drivers/pump/dart.py in the MicroPython WebAssembly port (npm package pinned in tests/micropython),
as CI does.
The same vectors also run here under CPython, so a failure points at MicroPython, not at the vectors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.micropython_npm import HERE, REPO, npm_install


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
    npm_install()
    done = subprocess.run([node, str(HERE / "run_vectors.mjs")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "MicroPython" in done.stdout
    assert " passed, 0 failed" in done.stdout, out
