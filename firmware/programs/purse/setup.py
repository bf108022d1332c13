"""Builds the chip purse program: it needs the terminal's SAM ([devices] sam_reader); without one the
terminal takes no purse (the card's other applications still serve it)."""

from __future__ import annotations

import logging

from firmware.programs.build import ProgramDeps
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.program import PurseProgram
from firmware.programs.purse.service import RegistryPurseService

__all__ = ["build"]

log = logging.getLogger(__name__)


def build(deps: ProgramDeps) -> PurseProgram | None:
    if deps.sam is None:
        log.warning("purse program named but no SAM reader configured ([devices] sam_reader)")
        return None
    cfg = deps.config
    return PurseProgram(deps.sam, PurseBook(deps.journal), most_cents=cfg.purse.most_cents,
                        most_cl=cfg.purse.most_cl, service=RegistryPurseService(deps.registry),
                        language=cfg.terminal.language, forward_every=cfg.purse.forward_every)
