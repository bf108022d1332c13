"""The attendant's keys and cards at the panel: the menu's digit keys (PanelCardholder.menu), a customer's
card presented while the attendant's own may still be in the reader (firmware.attendant.present), and the
offline PIN's plaintext block (signin.pin_digits)."""

from __future__ import annotations

import pytest
from test_cardholder import port

from contracts.errors import SaleCancelled
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.attendant.desk import ITEMS
from firmware.attendant.present import Presenter
from firmware.attendant.signin import CardNumber, card_of, pin_digits
from firmware.programs.base import CardIn, Contactless, DeadChip, Swipe
from ui.catalog import LANGUAGES, text
from ui.views import build

CLERK = "7077007000000016"
LOYAL = "7077009000000012"


def test_a_digit_picks_its_item_and_zero_the_tenth() -> None:
    p, panel, _ = port("7")
    assert p.menu(Screen.ATTENDANT_MENU, ITEMS, name="Ann") == 6
    assert panel.screens[-1] == (Screen.ATTENDANT_MENU, {"items": list(ITEMS), "name": "Ann"})
    p, _, _ = port("0")
    assert ITEMS[p.menu(Screen.ATTENDANT_MENU, ITEMS)] == "sign_out"
    p, _, _ = port("0", "5", "3", "ENTER", "2")       # two items: 0, 5 and 3 pick nothing
    assert p.menu(Screen.ATTENDANT_MENU, ("prepay_amount", "prepay_litres")) == 1


@pytest.mark.parametrize("keys", [("CANCEL",), ()])
def test_cancel_or_no_key_in_time_ends_the_menu(keys: tuple[str, ...]) -> None:
    p, _, clock = port(*keys, timeout=10.0)
    with pytest.raises(SaleCancelled):
        p.menu(Screen.ATTENDANT_MENU, ITEMS)
    assert clock.t >= (10.0 if not keys else 0.0)


class Reader:
    """Cards in the reader in turn: each stays until wait_for_removal is asked once."""

    def __init__(self, *cards: CardIn) -> None:
        self.cards, self.t = list(cards), 0.0
        self.disconnected = 0

    def wait_for_card(self, timeout: float) -> bool:
        self.t += timeout
        return bool(self.cards)

    def wait_for_removal(self, timeout: float) -> bool:
        self.t += timeout
        self.cards.pop(0)
        return True

    def disconnect(self) -> None:
        self.disconnected += 1


class Stripes:
    def __init__(self, *tracks: Track2) -> None:
        self.tracks = list(tracks)

    def wait_swipe(self, timeout: float) -> Track2 | None:
        return self.tracks.pop(0) if self.tracks else None


def _swipe(number: str) -> Swipe:
    return Swipe(Track2(number, "2912", "101", ""))


def _presenter(reader: Reader, stripes: Stripes | None = None, keys: list[str] | None = None) -> Presenter:
    pressed = list(keys or [])
    return Presenter(reader, stripes, lambda r: reader.cards[0], lambda c: c.number == CLERK,
                     lambda timeout: pressed.pop(0) if pressed else None, timeout=30.0,
                     clock=lambda: reader.t)


def test_the_attendants_own_card_is_passed_over_until_it_leaves() -> None:
    reader = Reader(_swipe(CLERK), _swipe(LOYAL))
    got = _presenter(reader)()
    assert got == CardNumber(LOYAL, "stripe") and reader.disconnected == 2
    assert LOYAL not in repr(got)


def test_a_swipe_is_taken_a_cancel_gives_up_and_nothing_in_time_is_none() -> None:
    assert _presenter(Reader(), Stripes(Track2(LOYAL, "2912", "101", "")))() == CardNumber(LOYAL, "stripe")
    assert _presenter(Reader(_swipe(CLERK)), keys=["1", "CANCEL"])() is None
    assert _presenter(Reader())() is None


def test_cards_without_a_number_give_none_and_a_tag_its_uid() -> None:
    assert card_of(DeadChip()) is None
    assert card_of(Contactless(bytes.fromhex("04a1b2c3d4e5f6"))) == CardNumber("U04A1B2C3D4E5F6", "tag")
    assert card_of(Contactless(b"\x01\x02")) is None


@pytest.mark.parametrize(("block", "pin"), [
    ("242580FFFFFFFFFF", "2580"), ("26123456FFFFFFFF", "123456"), ("241234", ""), ("142580FFFFFFFFFF", ""),
    ("2425A0FFFFFFFFFF", ""), ("232580FFFFFFFFFF", ""),
])
def test_the_offline_pin_block_gives_its_digits_or_nothing(block: str, pin: str) -> None:
    assert pin_digits(bytearray.fromhex(block)) == pin


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_attendant_screens_read_in_every_language(lang: str) -> None:
    menu = build(Screen.ATTENDANT_MENU, lang, items=list(ITEMS))
    assert [o.key for o in menu.options] == [*"123456789", "0"]
    assert menu.options[-1].label == text(lang, "menu.sign_out")
    refused = build(Screen.ATTENDANT_RESULT, lang, done="redeem", ok=False, reason="insufficient_points",
                    balance=80)
    assert refused.lines == (text(lang, "menu.redeem"), text(lang, "attendant_result.refused",
                                                             reason=text(lang, "reason.insufficient_points")))
    assert [f.key for f in refused.figures] == ["balance"]
    done = build(Screen.ATTENDANT_RESULT, lang, done="cash_prepay", ok=True, pump=1)
    assert done.lines == (text(lang, "menu.cash_prepay"), text(lang, "attendant_result.ok"))
    z = build(Screen.ATTENDANT_REPORTS, lang, kind="Z", shift=7, sales=2, total_cents=3319, currency="EUR")
    assert z.lines[0] == text(lang, "attendant_reports.z")
    assert [f.key for f in z.figures][:2] == ["shift", "sales"]


def test_a_cards_last_movements_are_shown_as_well_as_printed() -> None:
    from ui.screens import render

    moves = [{"date": "2026-12-01", "time": "10:00:00", "station": "ST-001", "points": 40, "kind": "earn"},
             {"date": "2026-11-30", "time": "09:05:00", "station": "ST-002", "points": -100,
              "kind": "redeem"}]
    shown = render("attendant_result", "en", done="movements", ok=True, balance=120, movements=moves * 4)
    assert shown.count("12/1/26 10:00 ST-001 +40") == 3 and "11/30/26 09:05 ST-002 -100" in shown
    assert sum("ST-00" in line for line in shown) == 5          # the newest five; the slip has all 30
    assert any("-۱۰۰" in line for line in render("attendant_result", "fa", done="movements", ok=True,
                                                  movements=moves[1:]))
