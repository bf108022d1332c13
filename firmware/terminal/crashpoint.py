"""A power cut on demand, for whole-system tests: with FORECOURT_CRASH_AT="before:approved" (or after:,
and any state, "figures" or a mark) the terminal process SIGKILLs itself just before (after) that journal
write, where no outside event can stop it as precisely. Unset, the terminal uses the plain journal.

Names: the state a write moves a sale to ("created", "authorizing", "approved", "pump_authorized",
"completed", "declined"), "figures" for the write of a sale's settled figures before it completes, and
the marks "receipt_started", "receipt_printed", "synced".
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState, write_name

__all__ = ["ENV", "CrashPointJournal", "open_journal"]

log = logging.getLogger(__name__)

ENV = "FORECOURT_CRASH_AT"


class CrashPointJournal(Journal):
    """The real journal; the process is killed once at the named write ("when:what"). Tests override
    _maybe to stop elsewhere than in a SIGKILL (tests/sale_fakes.py CrashingJournal)."""

    def __init__(self, path: str | Path, point: str = "") -> None:
        super().__init__(path)
        self.point = point

    def _maybe(self, when: str, what: str) -> None:
        if self.point == f"{when}:{what}":
            log.warning("crash point reached: killing the terminal", extra={"point": self.point})
            os.kill(os.getpid(), signal.SIGKILL)

    def begin_sale(self, sale_id: str, pump: int, card_masked: str, card_token: str, *, program: str,
                   adjuncts: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._maybe("before", "created")
        super().begin_sale(sale_id, pump, card_masked, card_token, program=program, adjuncts=adjuncts)
        self._maybe("after", "created")

    def transition(self, sale_id: str, state: SaleState, **fields: Any) -> None:
        name = write_name(state, fields)
        self._maybe("before", name)
        super().transition(sale_id, state, **fields)
        self._maybe("after", name)

    def mark(self, sale_id: str, flag: str) -> None:
        self._maybe("before", flag)
        super().mark(sale_id, flag)
        self._maybe("after", flag)


def open_journal(path: str | Path) -> Journal:
    """The terminal's journal; a CrashPointJournal when FORECOURT_CRASH_AT names a write."""
    point = os.environ.get(ENV, "").strip()
    if not point:
        return Journal(path)
    log.warning("crash point armed: the terminal will kill itself there", extra={"point": point})
    return CrashPointJournal(path, point)
