"""Scenario update-rollback on the whole simulated forecourt: a good update is installed between sales and
kept; a bad one fails its health check after the restart, the terminal returns to the previous version,
reports rolled_back, and the rollout halts by itself (hostsim/scenarios_update.py)."""

from __future__ import annotations

import pytest

from hostsim.scenarios import SCENARIOS, Run
from hostsim.scenarios_update import update_rollback

pytestmark = pytest.mark.system


def test_update_rollback(run: Run) -> None:
    assert SCENARIOS["update-rollback"] is update_rollback
    try:
        update_rollback(run)
    finally:
        print("\n".join(run.transcript))
    assert run.checks == []
