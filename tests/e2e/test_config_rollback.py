"""Scenario config-rollback on the whole system: bad configurations are refused and reported."""

from __future__ import annotations

import pytest

from hostsim.scenarios import Run
from hostsim.scenarios_config import config_rollback, running_config

pytestmark = pytest.mark.system


def test_config_rollback(run: Run) -> None:
    config_rollback(run)
    assert run.checks == [], "\n".join(run.checks + run.transcript[-20:])
    running = running_config(run.sim)
    assert running is not None and running["version"] == 1      # the registry's first, still run
