"""Builds the fleet program: it authorizes through the registry link."""

from __future__ import annotations

from firmware.programs.build import ProgramDeps
from firmware.programs.fleet.program import FleetProgram

__all__ = ["build"]


def build(deps: ProgramDeps) -> FleetProgram:
    return FleetProgram(deps.registry, iins=deps.config.fleet.iins)
