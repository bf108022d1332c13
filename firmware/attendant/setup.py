"""The attendant desk as the terminal's composition root builds it (firmware.terminal.run_terminal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from firmware.attendant.cash import CashProgram
from firmware.attendant.desk import Desk, DeskPort
from firmware.attendant.present import Presenter, Reader, Stripes
from firmware.attendant.shift import ShiftBook
from firmware.attendant.signin import SignInGate, find
from firmware.hostlink import HostLink
from firmware.programs.base import CardIn
from firmware.sale.runner import SaleRunner
from firmware.service_client import ServiceClient

__all__ = ["build_desk"]

TRIES = 5        # wrong PINs before an offline lockout (the registry's attendant_tries default)


def build_desk(runner: SaleRunner, port: DeskPort, host: HostLink, reader: Reader, stripes: Stripes | None,
               read: Callable[[Any], CardIn | None], keys: Callable[[float], str | None], *,
               timeout: float) -> Desk:
    """keys: the panel's read_key; timeout: a prompt's seconds."""
    journal = runner.world.journal
    service = ServiceClient(host)
    gate = SignInGate(host, service, journal, time.time, tries=TRIES)
    presenter = Presenter(reader, stripes, read, lambda card: find(host, card) is not None, keys,
                          timeout=timeout)
    cash = next((p for p in runner.world.programs if isinstance(p, CashProgram)), None)
    return Desk(runner=runner, port=port, gate=gate, book=ShiftBook(journal, time.time),
                service=service, present=presenter, cash=cash)
