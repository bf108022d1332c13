"""Screen texts of the terminal, by screen id and language. Pure data plus one render function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.reasons import LEGACY_REASONS
from contracts.screens import Screen
from ui.texts_de import CARD_TEXTS_DE, DECLINE_TEXTS_DE, QUESTION_TEXTS_DE, SCREENS_DE
from ui.texts_fr import CARD_TEXTS_FR, DECLINE_TEXTS_FR, QUESTION_TEXTS_FR, SCREENS_FR

__all__ = ["CARD_TEXTS", "DECLINE_TEXTS", "LANGUAGES", "QUESTION_TEXTS", "SCREENS", "render"]

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


# A program's question to the cardholder (firmware.programs.base.Question.id) and the cards that ride
# along a payment (an adjunct's name, on the card_read screen).
QUESTION_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {"odometer": "Odometer", "vehicle": "Vehicle number", "driver_id": "Driver number"},
    "de": QUESTION_TEXTS_DE,
    "fr": QUESTION_TEXTS_FR,
}
CARD_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {"loyalty": "Loyalty", "voucher": "Voucher"},
    "de": CARD_TEXTS_DE,
    "fr": CARD_TEXTS_FR,
}
# fields whose value is a catalogue key, translated before the screen is filled in
_FIELD_TEXTS = {"reason": DECLINE_TEXTS, "question": QUESTION_TEXTS, "card": CARD_TEXTS}


def render(screen: Screen | str, language: str = "en", **fields: Any) -> tuple[str, ...]:
    """Lines of a screen with its fields filled in; unknown language falls back to English.

    A reason field (a DeclineReason or its code; legacy codes such as "expired_card" too), a question and
    a card field become their texts.
    """
    table = SCREENS.get(language, SCREENS["en"])
    lines = table.get(screen) or SCREENS["en"][screen]
    for name, catalogue in _FIELD_TEXTS.items():
        if name in fields:
            code = str(fields[name])
            code = LEGACY_REASONS[code].value if name == "reason" and code in LEGACY_REASONS else code
            fields = {**fields, name: catalogue.get(language, catalogue["en"]).get(code, code)}
    return tuple(line.format(**fields) for line in lines)
