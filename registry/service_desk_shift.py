"""A terminal's Z report (service operation shift_close, registry.service_desk): checked, then kept once
per terminal and shift (ShiftReport, its totals as sent) and each attendant action in it audited once,
when the report is stored.

A report that could never be stored (a date that is no date, an attendant id longer than the column) is
answered NOT_ALLOWED: the terminal sends a report until the registry answers, and UNAVAILABLE would have
it sent for ever. An action is audited only when its attendant exists and may work at this station (the
others' are not: a terminal speaks for its own station's attendants only), its time is a time, and it was
not audited already when the registry was asked for it (a top-up, a reward, a conversion, a voucher).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import select

from contracts.errors import ConfigError
from contracts.service_messages import ServiceReason as R
from registry import attendants
from registry.models import Attendant, ShiftReport
from registry.service_desk_ask import Ask, Refused, may_act_at

__all__ = ["ATTENDANT_ID", "AUDITED_BEFORE", "shift_close"]

log = logging.getLogger(__name__)

ATTENDANT_ID = 16                   # shift_reports.attendant_id, attendants.id: String(16)
# actions audited when the registry was asked (a top-up, a reward) or by their own check (a sign-in)
AUDITED_BEFORE = ("topup", "redeem", "convert", "voucher")
_TOTALS = ("after_seq", "last_seq", "total", "by_product", "by_payment", "by_attendant", "topups_cents",
           "cash_cents")


def _utc(when: str) -> dt.datetime | None:
    """A wire time (YYYY-MM-DDTHH:MM:SSZ) as the registry keeps it (naive UTC); None when it is no time."""
    try:
        return dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def _audited(a: Ask, act: dict[str, Any], allowed: dict[str, bool]) -> bool:
    """Whether the Z report's action is audited now."""
    name = act["attendant"]
    if name not in allowed:
        allowed[name] = len(name) <= ATTENDANT_ID and may_act_at(a.s.get(Attendant, name), a.req["station"])
    return (allowed[name] and act["action"] in attendants.ACTIONS and act["action"] not in AUDITED_BEFORE
            and _utc(act["at"]) is not None)


def shift_close(a: Ask) -> dict[str, Any]:
    req, terminal = a.req, a.device.id
    opened, closed = _utc(req["opened_at"]), _utc(req["closed_at"])
    if opened is None or closed is None or len(req["attendant"]) > ATTENDANT_ID:
        log.warning("Z report that can never be stored refused", extra={"terminal": terminal,
                                                                        "shift": req["shift"]})
        raise Refused(R.NOT_ALLOWED, "Z report with a date that is no date or an overlong attendant id")
    if a.s.scalar(select(ShiftReport.id).where(ShiftReport.terminal == terminal,
                                               ShiftReport.shift == req["shift"])) is not None:
        return {"stored": False}
    a.s.add(ShiftReport(terminal=terminal, shift=req["shift"], opened_at=opened, closed_at=closed,
                        attendant_id=req["attendant"], totals=json.dumps({k: req[k] for k in _TOTALS},
                                                                         sort_keys=True),
                        received_at=a.now))
    where = {"terminal": terminal, "station": req["station"], "shift": req["shift"]}
    allowed: dict[str, bool] = {}
    for act in req["actions"]:
        if not _audited(a, act, allowed):
            continue
        subject = act["subject"] if act["subject"].isprintable() else ""
        subject = subject or f"shift:{terminal}:{req['shift']}"
        try:
            attendants.audit_action(a.s, act["attendant"], act["action"], subject[:64],
                                    {**where, "at": act["at"]}, a.now)
        except ConfigError:         # what the audit refuses is left out, not the whole report
            log.warning("Z report action not audited", extra={"terminal": terminal, "shift": req["shift"]})
    a.s.flush()
    return {"stored": True}
