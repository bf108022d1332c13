"""The attendant at the terminal (issue 15): sign-in with the attendant card and PIN, the menu (cash
prepay, top-up, points, movements, pump error, open sale, reprint, X and Z reports), the shift journal.
docs/attendant_terminal.md."""

from firmware.attendant.cash import CashOrder, CashProgram
from firmware.attendant.desk import ITEMS, Desk
from firmware.attendant.report import ShiftReport, build_report
from firmware.attendant.shift import ShiftBook
from firmware.attendant.signin import SignInGate

__all__ = ["ITEMS", "CashOrder", "CashProgram", "Desk", "ShiftBook", "ShiftReport", "SignInGate",
           "build_report"]
