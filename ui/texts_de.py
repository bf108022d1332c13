"""German screen and decline texts (pure data); the same ids and {fields} as English in ui.screens."""

from __future__ import annotations

__all__ = ["CARD_TEXTS_DE", "DECLINE_TEXTS_DE", "QUESTION_TEXTS_DE", "SCREENS_DE"]

SCREENS_DE: dict[str, tuple[str, ...]] = {
    "starting": ("Startet...",),
    "offline": ("Offline", "Kartenzahlung nicht möglich"),
    "idle": ("Willkommen", "Bitte Karte einstecken"),
    "idle_bank_only": ("Willkommen", "Nur Bankkarten", "Bitte Karte einstecken"),
    "reading": ("Karte wird gelesen...",),
    "card_not_accepted": ("Karte nicht akzeptiert", "Bitte Karte entnehmen"),
    "card_error": ("Kartenfehler", "Bitte Karte entnehmen"),
    "select_pump": ("Zapfsäule wählen", "{pumps}"),
    "enter_pin": ("PIN eingeben", "{stars}", "Mit ENTER bestätigen"),
    "authorizing": ("Autorisierung...", "Bitte warten"),
    "declined": ("Abgelehnt", "{reason}", "Bitte Karte entnehmen"),
    "host_unavailable": ("Abgelehnt", "Zentrale nicht erreichbar", "Bitte Karte entnehmen"),
    "lift_nozzle": ("Zapfsäule {pump}", "Zapfpistole abnehmen", "Max. {litres} L"),
    "filling": ("Zapfsäule {pump}", "{litres} L", "{amount}"),
    "completing": ("Zapfsäule {pump}", "Abschluss läuft..."),
    "thank_you": ("Vielen Dank", "{litres} L  {amount}", "Bitte Beleg entnehmen"),
    "no_fuel": ("Nicht getankt", "Nichts belastet"),
    "remove_card": ("Bitte Karte entnehmen",),
    "pump_error": ("Zapfsäule gestört", "Bitte Personal ansprechen"),
    "pump_busy": ("Alle Zapfsäulen belegt", "Bitte warten"),
    "choose_app": ("Anwendung wählen", "{apps}"),
    "swipe_card": ("Chip nicht lesbar", "Bitte Karte durchziehen"),
    "insert_chip": ("Chipkarte", "Bitte Chip verwenden"),
    "approved_up_to": ("Freigegeben bis", "{amount}", "Zapfsäule {pump}: Pistole abnehmen"),
    "lift_nozzle_amount": ("Zapfsäule {pump}", "Zapfpistole abnehmen", "Max. {amount}"),
    "card_removed": ("Karte entnommen", "Vorgang abgebrochen"),
    "processing": ("Bitte warten...", "Karte nicht entnehmen"),
    "enter_pin_last": ("PIN eingeben", "{stars}", "Letzter PIN-Versuch"),
    "question": ("{question}", "{answer}", "Mit ENTER bestätigen"),
    "card_read": ("{card}-Karte gelesen", "Bitte Zahlungskarte einstecken"),
}

DECLINE_TEXTS_DE: dict[str, str] = {
    "wrong_pin": "Falsche PIN", "pin_tries_exceeded": "Zu viele PIN-Versuche",
    "card_blocked": "Karte gesperrt",
    "limit_exhausted": "Limit ausgeschöpft", "product_not_allowed": "Produkt nicht erlaubt",
    "card_expired": "Karte abgelaufen", "unknown_card": "Unbekannte Karte",
    "pump_unknown": "Zapfsäule nicht verfügbar",
    "do_not_honour": "Von Bank abgelehnt", "insufficient_funds": "Keine ausreichende Deckung",
    "card_declined": "Von Karte abgelehnt",
    "not_accepted": "Karte nicht akzeptiert", "host_timeout": "Keine Antwort der Bank",
    "host_unavailable": "Bank nicht erreichbar", "chip_error": "Kartenfehler",
    "card_removed": "Karte entnommen",
    "card_error": "Kartenfehler", "cancelled": "Abgebrochen", "pump_busy": "Zapfsäule belegt",
    "interrupted": "Vorgang unterbrochen",
}

QUESTION_TEXTS_DE: dict[str, str] = {
    "odometer": "Kilometerstand", "vehicle": "Fahrzeugnummer", "driver_id": "Fahrernummer",
}

CARD_TEXTS_DE: dict[str, str] = {"loyalty": "Kundenkarte", "voucher": "Gutschein"}
