"""The terminal's screen ids: what the sale asks the panel to show. The texts per language are in the
catalogues ui/locales/<lang>.po (<id>.title, .body, .hint); a test fails when an id has no text in a
language."""

from __future__ import annotations

import enum

__all__ = ["Screen"]


class Screen(enum.StrEnum):
    STARTING = "starting"
    OFFLINE = "offline"
    IDLE = "idle"
    IDLE_BANK_ONLY = "idle_bank_only"
    READING = "reading"
    CARD_NOT_ACCEPTED = "card_not_accepted"
    CARD_ERROR = "card_error"
    SELECT_PUMP = "select_pump"
    ENTER_PIN = "enter_pin"
    ENTER_PIN_LAST = "enter_pin_last"
    AUTHORIZING = "authorizing"
    DECLINED = "declined"
    HOST_UNAVAILABLE = "host_unavailable"
    LIFT_NOZZLE = "lift_nozzle"
    LIFT_NOZZLE_AMOUNT = "lift_nozzle_amount"
    FILLING = "filling"
    COMPLETING = "completing"
    THANK_YOU = "thank_you"
    NO_FUEL = "no_fuel"
    REMOVE_CARD = "remove_card"
    CARD_LOADED = "card_loaded"      # a chip wallet took an ordered top-up (amount or litres)
    KEEP_CARD = "keep_card"          # a chip purse settles at the end of the filling: the card stays in
    PUMP_ERROR = "pump_error"
    PUMP_BUSY = "pump_busy"
    CHOOSE_APP = "choose_app"
    SWIPE_CARD = "swipe_card"
    INSERT_CHIP = "insert_chip"
    APPROVED_UP_TO = "approved_up_to"
    CARD_REMOVED = "card_removed"
    PROCESSING = "processing"
    QUESTION = "question"            # a program's question: odometer, vehicle, driver id
    CARD_READ = "card_read"          # a card riding along (loyalty) was read: insert the payment card
    ENTER_VOUCHER = "enter_voucher"  # a paper voucher's code typed at the idle screen (ENTER)
    VOUCHER_REFUSED = "voucher_refused"   # the registry said no to a voucher code: used, expired, unknown
    # the driver's choices and the sale's later steps (ui.views builds them; not every flow uses them yet)
    CHOOSE_LANGUAGE = "choose_language"
    CHOOSE_PRODUCT = "choose_product"
    ENTER_PRESET = "enter_preset"    # an amount or litres to fill up to
    HANG_UP = "hang_up"
    PRINTING = "printing"
    OUT_OF_SERVICE = "out_of_service"
    # the attendant's screens
    ATTENDANT_SIGN_IN = "attendant_sign_in"
    ATTENDANT_MENU = "attendant_menu"
    ATTENDANT_REPORTS = "attendant_reports"
    ATTENDANT_RESULT = "attendant_result"      # an attendant action's outcome (done, ok, reason)
    ATTENDANT_CARD = "attendant_card"          # present the customer's card (top-up, points)
