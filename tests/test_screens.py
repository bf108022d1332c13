"""The terminal's screens as Views (ui.views) and as lines (ui.screens.render): every screen in every
language, texts from the catalogues only, numbers per locale, what to do next after a decline."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import MessageError
from contracts.reasons import LEGACY_REASONS, DeclineReason
from contracts.screens import Screen
from ui.catalog import LANGUAGES, text
from ui.screens import render
from ui.view import Figure, Option, Tone, View
from ui.views import ADVICE, build

# fields the sale passes today (preformatted strings) for every screen that takes any
SAMPLE: dict[str, dict[str, Any]] = {
    "select_pump": {"pumps": [1, 2, 3]}, "enter_pin": {"stars": "**"}, "enter_pin_last": {"stars": ""},
    "declined": {"reason": "insufficient_funds"}, "lift_nozzle": {"pump": 2, "volume_cl": 4000},
    "lift_nozzle_amount": {"pump": 2, "amount_cents": 5000, "currency": "EUR"},
    "filling": {"pump": 2, "volume_cl": 1234, "amount_cents": 2155, "currency": "EUR", "price_milli": 1749},
    "completing": {"pump": 2}, "hang_up": {"pump": 2},
    "thank_you": {"volume_cl": 1234, "amount_cents": 2155, "currency": "EUR", "points": 120},
    "choose_app": {"options": ["VISA DEBIT", "VISA CREDIT"]},
    "approved_up_to": {"amount_cents": 15000, "currency": "EUR", "pump": 3},
    "card_loaded": {"volume_cl": 2000},
    "question": {"question": "odometer", "answer": "12"}, "card_read": {"card": "loyalty"},
    "idle": {"prices": [("Diesel", 1789), ("Super E10", 1859)], "currency": "EUR",
             "payments": ["bank", "fleet"]},
    "choose_product": {"products": [("Diesel", 1789), ("AdBlue", 899)], "currency": "EUR"},
    "enter_preset": {"mode": "amount", "amount_cents": 5000, "currency": "EUR"},
    "attendant_reports": {"sales": 42, "total_cents": 123456, "currency": "EUR"},
    "attendant_sign_in": {"stars": "***"},
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("screen", list(Screen))
def test_every_screen_builds_in_every_language(screen: Screen, lang: str) -> None:
    view = build(screen, lang, **SAMPLE.get(screen.value, {}))
    assert view.screen == screen.value and view.language == lang and view.title
    assert all(t and "{" not in t and "}" not in t for t in view.texts()), view
    assert view.tone_word == text(lang, f"tone.{view.tone.value}")
    assert View.from_doc(view.to_doc()) == view


def test_filling_shows_litres_and_amount_per_locale() -> None:
    view = build(Screen.FILLING, "de", pump=2, volume_cl=1234, amount_cents=2155, currency="EUR")
    assert view.title == "Zapfsäule 2"
    assert view.figures == (Figure("litres", "Liter", "12,34 l"), Figure("amount", "Betrag", "21,55\xa0€"))
    typed = build(Screen.FILLING, "en", pump=2, volume_cl=1234, amount_cents=2155, currency="EUR")
    assert [f.value for f in typed.figures] == ["12.34 L", "€21.55"]


def test_idle_shows_prices_payment_means_and_languages() -> None:
    view = build(Screen.IDLE, "fr", prices=[("Diesel", 1789), ("SP95", 1899)], currency="EUR",
                 payments=["bank", "fleet"], languages=True)
    assert view.figures == (Figure("price", "Diesel", "1,789\xa0€/L"),
                            Figure("price", "SP95", "1,899\xa0€/L"))
    assert view.lines == ("Acceptés : Cartes bancaires et Cartes flotte",)
    assert [o.label for o in view.options][:3] == ["English", "Deutsch", "Français"]
    assert [o.key for o in view.options] == [str(i) for i in range(1, len(LANGUAGES) + 1)]


def test_pump_and_application_choices_are_options_keyed_by_digit() -> None:
    pumps = build(Screen.SELECT_PUMP, "en", pumps=[1, 3]).options          # what the cardholder port sends
    assert pumps == (Option("1", "Pump 1"), Option("3", "Pump 3"))
    assert build(Screen.SELECT_PUMP, "en", pumps="1,3").options == pumps   # the string older callers send
    apps = build(Screen.CHOOSE_APP, "en", options=["VISA DEBIT", "VISA  CREDIT 2"]).options
    assert apps == (Option("1", "VISA DEBIT"), Option("2", "VISA  CREDIT 2"))   # labels as the card gives
    view = build(Screen.CHOOSE_PRODUCT, "de", products=[("Diesel", 1789)], currency="EUR")
    assert view.options == (Option("1", "Diesel 1,789\xa0€/l"),)
    assert view.option_for(1) == Option("1", "Diesel 1,789\xa0€/l") and view.option_for(2) is None


@pytest.mark.parametrize("reason", list(DeclineReason))
def test_a_decline_says_what_happened_and_what_to_do(reason: DeclineReason) -> None:
    view = build(Screen.DECLINED, "en", reason=reason)
    assert view.lines == (text("en", f"reason.{reason.value}"), text("en", f"advice.{ADVICE[reason.value]}"))
    assert view.tone is Tone.ERROR and view.hint == "Please remove card"


def test_prompts_time_out_and_notices_do_not() -> None:
    assert build(Screen.ENTER_PIN, "en").timeout == 30.0
    assert build(Screen.QUESTION, "en", question="vehicle", answer="", timeout=12).timeout == 12.0
    assert build(Screen.FILLING, "en", pump=1, volume_cl=0, amount_cents=0, currency="EUR").timeout is None


def test_speech_reads_the_screen_in_order() -> None:
    view = build(Screen.DECLINED, "en", reason="wrong_pin")
    assert view.speech() == "Error. Declined. Wrong PIN. Please try again. Please remove card."


@pytest.mark.parametrize(("lang", "line"), [
    ("en", "Wrong PIN — tries left: 2"), ("de", "Falsche PIN – verbleibende Versuche: 2"),
    ("fa", "رمز اشتباه است — دفعات باقی‌مانده: ۲"),
])
def test_a_wrong_pin_decline_says_the_tries_left(lang: str, line: str) -> None:
    view = build(Screen.DECLINED, lang, reason="wrong_pin", tries=2)
    assert view.lines == (line, text(lang, "advice.try_again"))
    assert build(Screen.DECLINED, lang, reason="wrong_pin").lines[0] == text(lang, "reason.wrong_pin")
    # another reason never shows tries, whatever the fields
    blocked = build(Screen.DECLINED, lang, reason="card_blocked", tries=2)
    assert blocked.lines[0] == text(lang, "reason.card_blocked")


def test_a_bad_view_doc_is_a_message_error() -> None:
    for doc in ([], {"screen": "idle"}, {**build("idle").to_doc(), "title": 7},
                {**build("idle").to_doc(), "tone": "pink"}):
        with pytest.raises(MessageError):
            View.from_doc(doc)


# -- the line-based entry point the socket panel and the simulator's log use ----------------------------
def test_render_takes_enum_members_and_codes_alike() -> None:
    assert render(Screen.DECLINED, "de", reason=DeclineReason.CARD_EXPIRED) == (
        "Abgelehnt", "Karte abgelaufen", "Bitte andere Karte verwenden", "Bitte Karte entnehmen")
    assert render(Screen.ENTER_PIN, "en", stars="***") == ("Enter PIN", "PIN: ***", "Press ENTER")
    assert render("card_read", "fr", card="loyalty") == ("Carte Fidélité lue", "Insérez la carte de paiement")
    assert render(Screen.QUESTION, question="Odometer?", answer="12345")[0] == "Odometer?"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_legacy_codes_render_as_their_reason(lang: str) -> None:
    for code, reason in LEGACY_REASONS.items():
        assert render("declined", lang, reason=code)[1] == text(lang, f"reason.{reason.value}")


def test_unknown_language_and_reason_fall_back() -> None:
    assert render("idle", "xx") == render("idle", "en") == ("Welcome", "Insert card")
    assert render("declined", "xx", reason="wrong_pin")[1] == "Wrong PIN"
    assert render("declined", "de", reason="some_new_code")[1] == "some_new_code"


# -- no text a person reads in code -----------------------------------------------------------------------
UI = Path(__file__).resolve().parents[1] / "ui"
MINE = ("catalog.py", "format.py", "view.py", "views.py", "screens.py", "draw.py", "fonts.py", "layout.py")
WORDS = re.compile(r"[^\W\d_]{2,}\s+[^\W\d_]{2,}")      # two words: a phrase, not a key or a code


def _literals(tree: ast.AST) -> list[str]:
    """String constants outside docstrings, raised errors and log calls."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                           and isinstance(node.func.value, ast.Name)
                                           and node.func.value.id == "log"):
            skip.update(id(n) for n in ast.walk(node))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in skip]


@pytest.mark.parametrize("name", [m for m in MINE if (UI / m).exists()])
def test_no_text_for_the_driver_is_left_in_code(name: str) -> None:
    phrases = [s for s in _literals(ast.parse((UI / name).read_text())) if WORDS.search(s)]
    assert not phrases, f"ui/{name}: texts belong in ui/locales/*.po: {phrases}"


def test_enter_preset_shows_the_entry_and_the_granted_maximum() -> None:
    view = build(Screen.ENTER_PRESET, "en", mode="amount", currency="EUR", max_cents=15000, amount_cents=2000)
    assert [(f.key, f.value) for f in view.figures] == [("amount", "€20.00"), ("maximum", "€150.00")]
    assert view.options == ()           # digits type the entry: no digit-keyed options beside it
    view = build(Screen.ENTER_PRESET, "de", mode="litres", max_cl=4000)
    assert [(f.key, f.value) for f in view.figures] == [("litres", "-"), ("maximum", "40,00 l")]
    assert [o.key for o in build(Screen.ENTER_PRESET, "en", mode="amount", modes=True).options] == ["1", "2"]


def test_figures_come_typed_and_a_string_shows_as_it_is() -> None:
    view = build(Screen.LIFT_NOZZLE_AMOUNT, "fr", pump=1, amount_cents=5000, currency="EUR")
    assert view.figures[0].value == "50,00\xa0€"
    assert build(Screen.FILLING, "de", pump=1, litres="12.34").figures[0].value == "12.34"   # no parsing


def test_a_typed_answer_shows_in_the_locales_digits() -> None:
    from ui.views import build

    assert build("question", "fa", question="odometer", answer="1284").figures[0].value == "۱۲۸۴"
    assert build("question", "en", question="odometer", answer="1284").figures[0].value == "1284"
