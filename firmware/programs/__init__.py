"""Card programs, by name: each is one package with a build function. The terminal builds those its
configuration enables, in this order; a card goes to the first that claims it (bank takes any chip
card, so it comes last). A new program is a new package plus one line here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from contracts.errors import ConfigError
from firmware.programs.base import CardProgram
from firmware.programs.build import ProgramDeps

__all__ = ["PROGRAMS", "build_programs"]

PROGRAMS: dict[str, str] = {
    "fleet": "firmware.programs.fleet.setup:build",
    "bank": "firmware.programs.bank.setup:build",
}


def build_programs(names: tuple[str, ...], deps: ProgramDeps) -> list[CardProgram]:
    """Build the named programs in the table's order; a build may return None (not configured)."""
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown:
        raise ConfigError(f"unknown card program {unknown[0]!r} (known: {', '.join(PROGRAMS)})",
                          key="terminal.programs")
    built = []
    for name, target in PROGRAMS.items():
        if name not in names:
            continue
        module, _, func = target.partition(":")
        build = cast(Callable[[ProgramDeps], Any], getattr(importlib.import_module(module), func))
        program = build(deps)
        if program is not None:
            built.append(cast(CardProgram, program))
    return built
