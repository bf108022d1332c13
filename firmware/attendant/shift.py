"""The terminal's shift journal, kept in the sale journal's key-value table (no schema change): the shift
now open, the attendants' actions in it (who, what, on what; never a PIN or a card number), and each Z
report as it was closed, kept for the registry until it acknowledges it.

Keys: "shift:current" (the open shift), "shift:act:<shift>:<n>" (one action), "shift:z:<shift>" (a closed
shift's Z report), "shift:unsent:<shift>" (a Z report the registry has not acknowledged yet),
"shift:refused:<shift>" (one the registry refused for good: set aside with an alarm, kept here). A Z
report, its unsent mark and the next shift are written in one journal transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from contracts.errors import JournalError
from firmware.attendant.report import CashIn, Shift, ShiftReport, build_report
from firmware.sale.journal import Journal

__all__ = ["ShiftBook", "close_request"]

log = logging.getLogger(__name__)

_CURRENT = "shift:current"
MOST_ACTIONS = 2000      # a Z report's actions sent to the registry (all stay in the journal)


def _act_prefix(shift: int) -> str:
    return f"shift:act:{shift:08d}:"


class ShiftBook:
    def __init__(self, journal: Journal, clock: Callable[[], float]) -> None:
        self.journal, self.clock = journal, clock
        self._lock = threading.Lock()

    def current(self) -> Shift:
        """The open shift; the first one is opened with the journal (every numbered sale before it counts)."""
        with self._lock:
            raw = self.journal.get_value(_CURRENT)
            if raw is None:
                shift = Shift(1, self.clock(), 0)
                self._put_shift(shift)
                return shift
        try:
            doc = json.loads(raw)
            return Shift(int(doc["number"]), float(doc["opened_at"]), int(doc["after_seq"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError("shift record is damaged") from exc

    def _put_shift(self, shift: Shift) -> None:
        self.journal.put(_CURRENT, json.dumps({"number": shift.number, "opened_at": shift.opened_at,
                                               "after_seq": shift.after_seq}))

    def record(self, attendant: str, action: str, subject: str = "", **detail: Any) -> None:
        """One attendant action in the open shift, logged with the attendant's id."""
        shift = self.current()
        with self._lock:
            prefix = _act_prefix(shift.number)
            n = len(self.journal.values(prefix)) + 1
            entry = {"at": self.clock(), "attendant": attendant, "action": action, "subject": subject,
                     "detail": dict(detail)}
            self.journal.put(f"{prefix}{n:06d}", json.dumps(entry, sort_keys=True))
        log.info("attendant action", extra={"attendant": attendant, "action": action, "subject": subject,
                                            "shift": shift.number})

    def actions(self, shift: int) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.journal.values(_act_prefix(shift)).values()]

    def _topups(self, shift: int) -> list[CashIn]:
        return [CashIn(a["attendant"], int(a["detail"]["paid_cents"])) for a in self.actions(shift)
                if a["action"] == "topup" and isinstance(a["detail"].get("paid_cents"), int)]

    def report(self) -> ShiftReport:
        """The X report: the open shift's running totals."""
        shift = self.current()
        return build_report(shift, self.journal.completed_after(shift.after_seq), self._topups(shift.number))

    def close(self, attendant: str) -> tuple[ShiftReport, dict[str, Any]]:
        """The Z report: the open shift's totals, kept with its actions for the registry; a new shift opens
        after the last sale the report holds (a sale completing meanwhile falls in the new one)."""
        report = self.report()
        closed_at = self.clock()
        doc = {**report.doc(), "closed_at": closed_at, "attendant": attendant,
               "actions": self.actions(report.shift.number)}
        if len(doc["actions"]) > MOST_ACTIONS:       # the registry gets the first ones; all stay here
            log.error("shift has more actions than a Z report carries",
                      extra={"alarm": "shift_actions", "shift": report.shift.number,
                             "actions": len(doc["actions"]), "sent": MOST_ACTIONS})
        nxt = Shift(report.shift.number + 1, closed_at, report.last_seq)
        with self._lock:
            key = f"{report.shift.number:08d}"
            self.journal.put_many({f"shift:z:{key}": json.dumps(doc, sort_keys=True),
                                   f"shift:unsent:{key}": "1",
                                   _CURRENT: json.dumps({"number": nxt.number, "opened_at": nxt.opened_at,
                                                         "after_seq": nxt.after_seq})})
        log.info("shift closed", extra={"attendant": attendant, "shift": report.shift.number,
                                        "sales": report.total.sales})
        return report, doc

    def z_report(self, shift: int) -> dict[str, Any] | None:
        raw = self.journal.get_value(f"shift:z:{shift:08d}")
        return None if raw is None else dict(json.loads(raw))

    def unsent(self) -> list[Mapping[str, Any]]:
        """Z reports the registry has not acknowledged, oldest first."""
        out: list[Mapping[str, Any]] = []
        for key in self.journal.values("shift:unsent:"):
            doc = self.z_report(int(key.rsplit(":", 1)[1]))
            if doc is not None:
                out.append(doc)
        return out

    def sent(self, shift: int) -> None:
        self.journal.delete(f"shift:unsent:{shift:08d}")

    def set_aside(self, shift: int, reason: str) -> None:
        """A Z report the registry refuses for good: no longer sent (the later ones go on), kept here with
        why, and an alarm."""
        key = f"{shift:08d}"
        self.journal.put_many({f"shift:refused:{key}": reason}, (f"shift:unsent:{key}",))
        log.error("registry refused a Z report: set aside",
                  extra={"alarm": "z_report_refused", "shift": shift, "reason": reason})

    def refused(self) -> dict[int, str]:
        """Z reports set aside, by shift: the registry's reason."""
        return {int(k.rsplit(":", 1)[1]): v for k, v in self.journal.values("shift:refused:").items()}


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def close_request(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A kept Z report as the service request shift_close carries it (contracts.service_messages): the
    totals, and each action's time, attendant, action and subject (its details stay here)."""
    return {"shift": doc["shift"], "attendant": doc["attendant"], "opened_at": _iso(doc["opened_at"]),
            "closed_at": _iso(doc["closed_at"]), "after_seq": doc["after_seq"], "last_seq": doc["last_seq"],
            "total": doc["total"], "by_product": doc["by_product"], "by_payment": doc["by_payment"],
            "by_attendant": doc["by_attendant"], "cash_cents": doc["cash_cents"],
            "topups_cents": sum(int(c) for _, c in doc["topups"].values()),
            "actions": [{"at": _iso(a["at"]), "attendant": a["attendant"], "action": a["action"],
                         "subject": str(a["subject"])[:64]} for a in doc["actions"][:MOST_ACTIONS]]}
