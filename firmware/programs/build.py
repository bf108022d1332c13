"""What a program's build function gets from the terminal's composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.config import TerminalConfig
from firmware.sale.journal import Journal

__all__ = ["ProgramDeps"]


@dataclass(frozen=True)
class ProgramDeps:
    config: TerminalConfig
    journal: Journal
    registry: Any                          # firmware.hostlink.HostLink: the registry's services
    pinpad: Any                            # the PIN pad (its DUKPT counter)
    magstripe: bool                        # a stripe reader head is fitted
    open_device: Callable[[str, str], Any]   # (kind, URL) -> an opened device from the terminal's table
    sam: Any = None                        # the SAM's reader ([devices] sam_reader), connected; None: no SAM
