"""The MicroPython WebAssembly port the CI runs our MicroPython code under (tests/micropython/, npm package
pinned in its package-lock.json): installed here when missing or not the locked version."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "micropython"
REPO = HERE.parent.parent
PACKAGE = "@micropython/micropython-webassembly-pyscript"


def npm_install() -> None:
    """npm ci into tests/micropython when the package is missing or not the locked version; a skip when
    npm is not installed (scripts/setup.sh installs nodejs and npm)."""
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
