"""What the bank-card sale asks the cardholder, through the cardholder port: the application (when the
card wants a choice), the screen language from the card, and the PIN (online under DUKPT, or offline
for the chip to verify)."""

from __future__ import annotations

from collections.abc import Callable

from contracts.errors import SaleCancelled
from contracts.iso8583_dialect import PIN_ISO0_TDEA2
from contracts.screens import Screen
from firmware.emv import CandidateList, PinInput, choose_language
from firmware.emv.select import Candidate, SelectedApp
from firmware.programs.base import Cardholder

__all__ = ["Prompts"]


class _OfflinePin:
    def __init__(self, prompts: Prompts, tries: int | None) -> None:
        self.prompts, self.tries = prompts, tries

    def plain_pin_block_for_card(self) -> bytearray:
        # tries: the card's PIN Try Counter (9F17, EMV Book 3 10.5.1), shown so the cardholder knows
        return self.prompts.port.offline_pin(self.tries == 1, tries=self.tries)


class Prompts:
    """One per card; ksn and selected describe the card now in the reader.

    home: the terminal's own language; after_pin: persists the DUKPT counter before the PIN block leaves
    the terminal; keys_left: False once the PIN pad's DUKPT keys are used up; pin_format: the PIN block the
    acquirer's dialect carries (contracts.iso8583_dialect)."""

    def __init__(self, port: Cardholder, *, home: str, after_pin: Callable[[], None],
                 keys_left: Callable[[], bool], pin_format: str = PIN_ISO0_TDEA2) -> None:
        self.port, self.home, self.after_pin, self.keys_left = port, home, after_pin, keys_left
        self.pin_format = pin_format
        self.ksn: bytes | None = None
        self.selected = False       # an application was final-selected: no magstripe fallback after that

    def language(self, app: SelectedApp) -> None:
        """Called at final selection: the card's 5F2D picks the screens from here on."""
        self.selected = True
        self.port.set_language(choose_language(app.language, self.port.languages, self.home))

    def choose_app(self, candidates: CandidateList) -> Candidate | None:
        apps = candidates.candidates[:9]
        pick = self.port.choose([c.display_name for c in apps])
        self.port.show(Screen.PROCESSING)
        return apps[pick]

    def pin_entry(self, kind: str, tries: int | None, pan: str) -> PinInput:
        """The kernel's PIN entry: online PIN for the acquirer, or offline PIN for the card."""
        if kind == "online":
            return PinInput(online_block=self.online_pin(pan))
        return PinInput(offline=_OfflinePin(self, tries))

    def online_pin(self, pan: str) -> bytes:
        """The dialect's PIN block under the next DUKPT key; the KSN stays in self.ksn for the 0100."""
        if not self.keys_left():
            raise SaleCancelled("DUKPT keys exhausted")
        ksn, block = self.port.dukpt_pin_block(pan, fmt=self.pin_format)
        self.after_pin()
        self.ksn = ksn
        self.port.show(Screen.PROCESSING)
        return block
