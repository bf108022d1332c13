"""The terminal's SAM in the simulator: a PurseSam in the second slot of the simulator's pcscd, fitted to the
seed terminal by the registry as `forecourt provision sam` fits one (hostsim.purse_factory.fit_sam). It
lives in the simulator's process, so it keeps its keys and its record sequence across terminal restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from hostsim.cards.purse_sam import PurseSam
from hostsim.purse_factory import fit_sam
from hostsim.vpcd import VirtualCardServer

__all__ = ["SAM_ID", "PurseSlot"]

SAM_ID = bytes.fromhex("5A4D000000000001")


class PurseSlot:
    def __init__(self, sam_id: bytes = SAM_ID) -> None:
        self.server = VirtualCardServer()
        self.sam = PurseSam(sam_id)
        self.fitted = False

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> Self:
        self.server.start()
        self.server.insert(self.sam)
        return self

    def fit(self, registry_url: str, registry_state: Path, terminal: str) -> None:
        """Enrol and personalise the SAM once the registry knows the terminal (idempotent)."""
        if not self.fitted:
            fit_sam(registry_url, registry_state, terminal, self.sam)
            self.fitted = True

    def stop(self) -> None:
        self.server.stop()
