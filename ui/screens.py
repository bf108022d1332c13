"""Screen texts of the terminal, by screen id and language. Pure data plus one render function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.reasons import LEGACY_REASONS
from contracts.screens import Screen
from ui.texts_de import DECLINE_TEXTS_DE, SCREENS_DE
from ui.texts_fr import DECLINE_TEXTS_FR, SCREENS_FR

__all__ = ["DECLINE_TEXTS", "LANGUAGES", "SCREENS", "render"]

SCREENS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "en": {
        "starting": ("Starting...",),
        "offline": ("Offline", "Card sales unavailable"),
        "idle": ("Welcome", "Insert card"),
        "idle_bank_only": ("Welcome", "Bank cards only", "Insert card"),
        "reading": ("Reading card...",),
        "card_not_accepted": ("Card not accepted", "Please remove card"),
        "card_error": ("Card error", "Please remove card"),
        "select_pump": ("Select pump", "{pumps}"),
        "enter_pin": ("Enter PIN", "{stars}", "Press ENTER"),
        "authorizing": ("Authorizing...", "Please wait"),
        "declined": ("Declined", "{reason}", "Please remove card"),
        "host_unavailable": ("Declined", "Host unavailable", "Please remove card"),
        "lift_nozzle": ("Pump {pump}", "Lift nozzle", "Max {litres} L"),
        "filling": ("Pump {pump}", "{litres} L", "{amount}"),
        "completing": ("Pump {pump}", "Completing sale..."),
        "thank_you": ("Thank you", "{litres} L  {amount}", "Take your receipt"),
        "no_fuel": ("No fuel taken", "Nothing charged"),
        "remove_card": ("Please remove card",),
        "pump_error": ("Pump unavailable", "Please see attendant"),
        "pump_busy": ("All pumps busy", "Please wait"),
        "choose_app": ("Choose application", "{apps}"),
        "swipe_card": ("Chip not read", "Please swipe card"),
        "insert_chip": ("Chip card", "Please insert chip"),
        "approved_up_to": ("Approved up to", "{amount}", "Lift nozzle on pump {pump}"),
        "lift_nozzle_amount": ("Pump {pump}", "Lift nozzle", "Max {amount}"),
        "card_removed": ("Card removed", "Transaction cancelled"),
        "processing": ("Processing...", "Do not remove card"),
        "enter_pin_last": ("Enter PIN", "{stars}", "Last PIN try"),
        "question": ("{question}", "{answer}", "Press ENTER"),
        "card_read": ("{card} card read", "Insert payment card"),
    },
    "de": SCREENS_DE,
    "fr": SCREENS_FR,
}
LANGUAGES = tuple(SCREENS)   # ("en", "de", "fr"): ISO 639-1, as in the card's tag 5F2D

DECLINE_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "wrong_pin": "Wrong PIN", "pin_tries_exceeded": "PIN tries exceeded", "card_blocked": "Card blocked",
        "limit_exhausted": "Limit exhausted", "product_not_allowed": "Product not allowed",
        "card_expired": "Card expired", "unknown_card": "Unknown card", "pump_unknown": "Pump not served",
        # bank cards: issuer and host responses, card and kernel outcomes
        "do_not_honour": "Declined by bank", "insufficient_funds": "Insufficient funds",
        "card_declined": "Declined by card",
        "not_accepted": "Card not accepted", "host_timeout": "No answer from bank",
        "host_unavailable": "Bank unavailable", "chip_error": "Card error", "card_removed": "Card removed",
        "card_error": "Card error", "cancelled": "Cancelled", "pump_busy": "Pump busy",
        "interrupted": "Sale interrupted",
    },
    "de": DECLINE_TEXTS_DE,
    "fr": DECLINE_TEXTS_FR,
}


def render(screen: Screen | str, language: str = "en", **fields: Any) -> tuple[str, ...]:
    """Lines of a screen with its fields filled in; unknown language falls back to English.

    A reason field (a DeclineReason or its code; legacy codes such as "expired_card" too) becomes its text.
    """
    table = SCREENS.get(language, SCREENS["en"])
    lines = table.get(screen) or SCREENS["en"][screen]
    if "reason" in fields:
        code = str(fields["reason"])
        code = LEGACY_REASONS[code].value if code in LEGACY_REASONS else code
        texts = DECLINE_TEXTS.get(language, DECLINE_TEXTS["en"])
        fields = {**fields, "reason": texts.get(code, code)}
    return tuple(line.format(**fields) for line in lines)
