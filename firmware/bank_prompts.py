"""What the bank-card sale asks the cardholder: the application (when the card wants a choice), the
screen language from the card, and the PIN (online under DUKPT, or offline for the chip to verify)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from contracts.errors import SaleCancelled
from firmware.emv import CandidateList, PinInput, choose_language
from firmware.emv.select import Candidate, SelectedApp

__all__ = ["DukptPad", "Prompts"]


class DukptPad(Protocol):
    @property
    def dukpt_counter(self) -> int | None: ...
    def read_dukpt_pin_block(self, pan: str, timeout: float,
                             on_digits: Callable[[int], None] = ...) -> tuple[bytes, bytes]: ...
    def read_offline_pin(self, timeout: float, on_digits: Callable[[int], None] = ...) -> bytearray: ...


class _OfflinePin:
    def __init__(self, prompts: Prompts, last_try: bool) -> None:
        self.prompts, self.last_try = prompts, last_try

    def plain_pin_block_for_card(self) -> bytearray:
        return self.prompts.offline_pin(self.last_try)


class Prompts:
    """One per terminal; ksn and selected describe the card now in the reader (reset()).

    panel: the terminal's panel; timeout: seconds per prompt; home: the terminal's own language;
    after_pin: persists the DUKPT counter before the PIN block leaves the terminal."""

    def __init__(self, panel: Any, pinpad: DukptPad, *, timeout: float, home: str,
                 after_pin: Callable[[], None]) -> None:
        self.panel, self.pinpad, self.timeout = panel, pinpad, timeout
        self.home, self.after_pin = home, after_pin
        self.ksn: bytes | None = None
        self.selected = False       # an application was final-selected: no magstripe fallback after that

    def reset(self) -> None:
        self.ksn, self.selected = None, False
        self.panel.set_language(self.home)

    def language(self, app: SelectedApp) -> None:
        """Called at final selection: the card's 5F2D picks the screens from here on."""
        self.selected = True
        self.panel.set_language(choose_language(app.language, self.panel.languages, self.home))

    def choose_app(self, candidates: CandidateList) -> Candidate | None:
        panel = self.panel
        apps = candidates.candidates[:9]
        panel.flush_keys()
        panel.show("choose_app", apps="  ".join(f"{i} {c.display_name}" for i, c in enumerate(apps, 1)))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            key = panel.read_key(0.5)
            if key == "CANCEL":
                raise SaleCancelled("application choice cancelled")
            if key == "ENTER" and len(apps) == 1:
                return apps[0]
            if key is not None and key.isdigit() and 1 <= int(key) <= len(apps):
                panel.show("processing")
                return apps[int(key) - 1]
        raise SaleCancelled("no application chosen")

    def pin_entry(self, kind: str, tries: int | None, pan: str) -> PinInput:
        """The kernel's PIN entry: online PIN for the acquirer, or offline PIN for the card."""
        if kind == "online":
            return PinInput(online_block=self.online_pin(pan))
        return PinInput(offline=_OfflinePin(self, tries == 1))

    def online_pin(self, pan: str) -> bytes:
        """ISO 9564 format 4 block under the next DUKPT key; the KSN stays in self.ksn for the 0100."""
        panel = self.panel
        if self.pinpad.dukpt_counter is None:
            raise SaleCancelled("DUKPT keys exhausted")
        panel.flush_keys()
        panel.show("enter_pin", stars="")
        ksn, block = self.pinpad.read_dukpt_pin_block(
            pan, self.timeout, lambda n: panel.show("enter_pin", stars="*" * n))
        self.after_pin()
        self.ksn = ksn
        panel.show("processing")
        return block

    def offline_pin(self, last_try: bool) -> bytearray:
        panel = self.panel
        screen = "enter_pin_last" if last_try else "enter_pin"
        panel.flush_keys()
        panel.show(screen, stars="")
        block = self.pinpad.read_offline_pin(self.timeout, lambda n: panel.show(screen, stars="*" * n))
        panel.show("processing")
        return block
