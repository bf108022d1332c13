"""`forecourt registry offline-limit`: set, list and clear a card class's offline limit, audited; what the
signed configuration then carries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from registry.db import open_database
from registry.fleet.stoplist import offline_limits
from registry.models import AuditEntry


def forecourt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "forecourtcli", "registry", *args], check=False,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "USER": "ops-anna"})


def test_offline_limits_are_set_listed_cleared_and_audited(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    done = forecourt("offline-limit", "set", "fleet_tag", "--amount", "40", "--litres", "25.5",
                     "--reason", "policy 12", "--db", db)
    assert done.returncode == 0, done.stderr
    assert "fleet_tag: offline sales up to 40.00 and 25.50 L" in done.stdout
    listed = forecourt("offline-limit", "list", "--db", db).stdout.splitlines()
    assert listed == ["fleet         no offline sales", "fleet_stripe  no offline sales",
                      "fleet_tag     40.00  25.50 L"]
    engine, sessions = open_database(db)
    try:
        with sessions() as s:
            assert offline_limits(s) == {"fleet_tag": {"amount_cents": 4000, "volume_cl": 2550}}
        assert forecourt("offline-limit", "clear", "fleet_tag", "--reason", "pilot over", "--db",
                         db).returncode == 0
        with sessions() as s:
            assert offline_limits(s) == {}
            trail = s.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.reason)
                              .order_by(AuditEntry.id)).all()
        assert [tuple(t) for t in trail] == [("ops-anna", "offline_limit.set", "policy 12"),
                                             ("ops-anna", "offline_limit.clear", "pilot over")]
    finally:
        engine.dispose()


def test_a_limit_without_a_reason_or_out_of_range_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    assert forecourt("offline-limit", "set", "fleet", "--amount", "40", "--litres", "25", "--db",
                     db).returncode == 2                                   # --reason is required
    refused = forecourt("offline-limit", "set", "fleet", "--amount", "0", "--litres", "25", "--reason", "x",
                        "--db", db)
    assert refused.returncode == 2 and "offline limit is a positive amount" in refused.stderr
