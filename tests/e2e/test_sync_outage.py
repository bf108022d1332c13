"""Scenario sync-outage on the whole system: the broker stops during 50 sales and comes back."""

from __future__ import annotations

import pytest

from hostsim.scenarios import Run
from hostsim.scenarios_sync import SALES, sync_outage

pytestmark = pytest.mark.system


def test_sync_outage(run: Run) -> None:
    sync_outage(run)
    assert run.checks == [], "\n".join(run.checks + run.transcript[-20:])
    assert len(run.sale_ids) == len(set(run.sale_ids)) == SALES
    assert sorted(row["sale_id"] for row in run.sim.registry_sales()) == sorted(run.sale_ids)
