"""Why a sale was declined or ended without fuel: one code per reason, shared by the terminal, the
registry (it answers authorizations with these codes) and the screen texts (ui.screens.DECLINE_TEXTS)."""

from __future__ import annotations

import enum

__all__ = ["LEGACY_REASONS", "DeclineReason", "parse_reason"]


class DeclineReason(enum.StrEnum):
    # the card and its holder
    WRONG_PIN = "wrong_pin"
    PIN_TRIES_EXCEEDED = "pin_tries_exceeded"
    CARD_BLOCKED = "card_blocked"
    CARD_EXPIRED = "card_expired"
    UNKNOWN_CARD = "unknown_card"
    NOT_ACCEPTED = "not_accepted"
    CARD_ERROR = "card_error"
    CHIP_ERROR = "chip_error"
    CARD_REMOVED = "card_removed"
    CARD_DECLINED = "card_declined"          # the chip refused (AAC)
    CANCELLED = "cancelled"                  # CANCEL key, a prompt timed out
    # what the card may buy
    LIMIT_EXHAUSTED = "limit_exhausted"
    PRODUCT_NOT_ALLOWED = "product_not_allowed"
    PUMP_UNKNOWN = "pump_unknown"
    PUMP_BUSY = "pump_busy"
    STATION_NOT_ALLOWED = "station_not_allowed"   # no wallet of the account may be spent at this station
    OUTSIDE_TIME_WINDOW = "outside_time_window"   # the card may not buy at this day or hour
    # the answers the account asks for at the pump (fleet prompts)
    PROMPTS_REQUIRED = "prompts_required"         # not shown: the terminal asks them and asks again
    ODOMETER_INVALID = "odometer_invalid"         # backwards, or more than the vehicle could have driven
    VEHICLE_UNKNOWN = "vehicle_unknown"
    DRIVER_UNKNOWN = "driver_unknown"
    # the authorizing host
    DO_NOT_HONOUR = "do_not_honour"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    HOST_UNAVAILABLE = "host_unavailable"
    HOST_TIMEOUT = "host_timeout"
    # after a restart: the sale stopped before anything was asked or held
    INTERRUPTED = "interrupted"
    PURCHASE_OPEN = "purchase_open"     # a chip purse holds a purchase another terminal has not completed


# Codes older journals and registries wrote for the same reasons.
LEGACY_REASONS = {"expired_card": DeclineReason.CARD_EXPIRED, "incorrect_pin": DeclineReason.WRONG_PIN}


def parse_reason(code: str) -> DeclineReason:
    """The reason for a stored or received code; an unknown code is a plain decline (do not honour).

    >>> parse_reason("expired_card")
    <DeclineReason.CARD_EXPIRED: 'card_expired'>
    >>> parse_reason("limit_exhausted").value
    'limit_exhausted'
    """
    if code in LEGACY_REASONS:
        return LEGACY_REASONS[code]
    try:
        return DeclineReason(code)
    except ValueError:
        return DeclineReason.DO_NOT_HONOUR
