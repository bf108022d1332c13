"""Card programs, by name: each is one package with a build function. The terminal builds those its
configuration enables, in this order; a card goes to the first that claims it (bank takes any chip
card, so it comes last). A new program is a new package plus one line here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from contracts.errors import ConfigError
from firmware.programs.base import Adjunct, CardProgram
from firmware.programs.build import ProgramDeps

__all__ = ["ADJUNCTS", "PROGRAMS", "build_adjuncts", "build_programs"]

PROGRAMS: dict[str, str] = {
    # a fleet card with wallets on its chip pays from them (before its fleet application is asked)
    "purse": "firmware.programs.purse.setup:build",
    "fleet": "firmware.programs.fleet.setup:build",
    "voucher": "firmware.programs.voucher.setup:build",
    "bank": "firmware.programs.bank.setup:build",
    "cash": "firmware.attendant.cash:build",      # an attendant's cash prepay (never claims a card)
}
# cards that ride along a payment (firmware.programs.base.Adjunct), named in terminal.programs too
ADJUNCTS: dict[str, str] = {
    "loyalty": "firmware.programs.loyalty.setup:build",
}


def _build(table: dict[str, str], names: tuple[str, ...], deps: ProgramDeps) -> list[Any]:
    built = []
    for name, target in table.items():
        if name not in names:
            continue
        module, _, func = target.partition(":")
        build = cast(Callable[[ProgramDeps], Any], getattr(importlib.import_module(module), func))
        program = build(deps)
        if program is not None:
            built.append(program)
    return built


def build_adjuncts(names: tuple[str, ...], deps: ProgramDeps) -> list[Adjunct]:
    """Build the named adjuncts (build_programs checks the names)."""
    return [cast(Adjunct, a) for a in _build(ADJUNCTS, names, deps)]


def build_programs(names: tuple[str, ...], deps: ProgramDeps) -> list[CardProgram]:
    """Build the named programs in the table's order; a build may return None (not configured)."""
    unknown = [n for n in names if n not in PROGRAMS and n not in ADJUNCTS]
    if unknown:
        raise ConfigError(f"unknown card program {unknown[0]!r} (known: {', '.join([*PROGRAMS, *ADJUNCTS])})",
                          key="terminal.programs")
    return [cast(CardProgram, p) for p in _build(PROGRAMS, names, deps)]
