"""Operator reports over the registry's tables: devices online and offline, by software and configuration
version, certificates expiring soon, and sales not yet received from each device (by sequence gap).

Each report is a Table (a title, column names, rows of text): the command line prints it as a table or as
CSV. Queries only; no report writes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.models import Device, Transaction

__all__ = ["EXPIRY_WINDOWS", "REPORTS", "Table", "certificates", "devices", "gaps", "to_csv", "to_text",
           "versions"]

EXPIRY_WINDOWS = (30, 60, 90)          # days ahead a certificate report looks
# devices a report counts: a revoked or decommissioned one is history, not the fleet
LIVE = ("pending", "active")


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]


def _when(at: dt.datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at is not None else "-"


def _live(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).where(Device.status.in_(LIVE)).order_by(Device.id)).all())


def devices(session: Session, now: dt.datetime) -> Table:
    """Every live device: online or not, last seen, the versions it reports (and wants), its backlog."""
    rows = []
    for d in _live(session):
        want_sw = d.desired_software_version
        want_cfg = d.desired_config_version
        rows.append((d.id, d.station_id, d.status, "online" if d.online else "offline", _when(d.last_seen_at),
                     d.reported_software_version or "-",
                     "" if want_sw in (None, d.reported_software_version) else str(want_sw),
                     "-" if d.reported_config_version is None else str(d.reported_config_version),
                     "" if want_cfg in (None, d.reported_config_version) else str(want_cfg),
                     str(d.backlog), str(d.backlog_oldest_s) if d.backlog else ""))
    online = sum(1 for r in rows if r[3] == "online")
    return Table(f"Devices: {online} online, {len(rows) - online} offline ({_when(now)} UTC)",
                 ("device", "station", "status", "link", "last_seen", "software", "software_wanted", "config",
                  "config_wanted", "backlog", "oldest_unsent_s"), rows)


def versions(session: Session, now: dt.datetime) -> Table:
    """How many live devices run each software and configuration version, online and offline."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for d in _live(session):
        counts["software", d.reported_software_version or "unknown", "online" if d.online else "offline"] += 1
        config = "unknown" if d.reported_config_version is None else str(d.reported_config_version)
        counts["config", config, "online" if d.online else "offline"] += 1
    keys = sorted({(kind, version) for kind, version, _ in counts})
    rows = []
    for kind, version in keys:
        up, down = counts[kind, version, "online"], counts[kind, version, "offline"]
        rows.append((kind, version, str(up), str(down), str(up + down)))
    return Table(f"Versions reported by devices ({_when(now)} UTC)",
                 ("kind", "version", "online", "offline", "devices"), rows)


def certificates(session: Session, now: dt.datetime, days: int = 30) -> Table:
    """Live devices whose certificate expires within `days` (or has expired), soonest first."""
    if days not in EXPIRY_WINDOWS:
        raise ConfigError(f"days must be one of {', '.join(map(str, EXPIRY_WINDOWS))}", key="days")
    until = now + dt.timedelta(days=days)
    found = session.scalars(select(Device).where(Device.status.in_(LIVE), Device.cert_expires_at.is_not(None),
                                                 Device.cert_expires_at <= until)
                            .order_by(Device.cert_expires_at, Device.id)).all()
    rows = []
    for d in found:
        if d.cert_expires_at is None:             # the query's own condition (for the type checker)
            continue
        left = (d.cert_expires_at - now).total_seconds() / 86400
        rows.append((d.id, d.station_id, d.status, _when(d.cert_expires_at),
                     "expired" if left < 0 else str(int(left)), (d.cert_fingerprint or "-")[:16]))
    return Table(f"Certificates expiring within {days} days: {len(rows)} ({_when(now)} UTC)",
                 ("device", "station", "status", "expires_at", "days_left", "fingerprint"), rows)


def _ranges(missing: list[tuple[int, int]]) -> str:
    """(first, last) missing runs as text: 3-5, 9."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in missing)


def gaps(session: Session, now: dt.datetime, *, most_ranges: int = 20) -> Table:
    """Per device that sent numbered sales: the highest number received, how many received, and the numbers
    between 1 and the highest that are not (sales still in the terminal, parked there, or lost).

    Gaps are found in SQL (LAG over each device's numbers, on SQLite 3.25+ and PostgreSQL): only the rows at
    a gap come back, not the history.
    """
    numbered = Transaction.seq.is_not(None)
    totals = session.execute(select(Transaction.device_id, func.max(Transaction.seq),
                                    func.count(func.distinct(Transaction.seq)))
                             .where(numbered).group_by(Transaction.device_id)
                             .order_by(Transaction.device_id)).all()
    prev = func.lag(Transaction.seq).over(partition_by=Transaction.device_id, order_by=Transaction.seq)
    ordered = select(Transaction.device_id.label("device"), Transaction.seq.label("seq"),
                     func.coalesce(prev, 0).label("prev")).where(numbered).subquery()
    holes = session.execute(select(ordered.c.device, ordered.c.prev, ordered.c.seq)
                            .where(ordered.c.seq - ordered.c.prev > 1)
                            .order_by(ordered.c.device, ordered.c.seq)).all()
    runs: dict[str, list[tuple[int, int]]] = {}
    for device, before, after in holes:
        runs.setdefault(device, []).append((int(before) + 1, int(after) - 1))
    rows = []
    for device, highest, received in totals:
        missing = int(highest or 0) - int(received)
        shown = runs.get(device, [])
        text = _ranges(shown[:most_ranges]) + (" ..." if len(shown) > most_ranges else "")
        rows.append((device, str(highest), str(received), str(missing), text))
    behind = sum(1 for r in rows if r[3] != "0")
    return Table(f"Sales not yet received, by sequence gap: {behind} device(s) with gaps ({_when(now)} UTC)",
                 ("device", "highest_seq", "received", "missing", "missing_seq"), rows)


REPORTS = {"devices": devices, "versions": versions, "gaps": gaps}


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def to_text(table: Table) -> str:
    """The table with aligned columns under its title; "(none)" when it has no row."""
    widths = [max([len(c), *(len(r[i]) for r in table.rows)]) for i, c in enumerate(table.columns)]
    line = "  ".join
    lines = [table.title, "", line(c.ljust(w) for c, w in zip(table.columns, widths, strict=True)).rstrip(),
             line("-" * w for w in widths)]
    lines += [line(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in table.rows]
    if not table.rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"
