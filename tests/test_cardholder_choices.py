"""The driver's choices on the terminal's own panel (firmware.terminal.cardholder): the language on the idle
screen, the product and the amount or litres after the grant, and the PIN tries left. Keys come from a
script, time from a fake clock (tests/test_cardholder.py's fakes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from contracts.errors import SaleCancelled
from contracts.screens import Screen
from firmware.programs.bank.prompts import Prompts
from firmware.programs.base import Grant
from firmware.sale.limits import driver_limits
from firmware.sale.record import Preset
from firmware.terminal.serve import idle_fields
from tests.sale_fakes import ScriptedCardholder, station
from tests.test_cardholder import port
from ui.views import build

DIESEL, SUPER = ("Diesel", 1659), ("Super 95", 1789)


# -- the language on the idle screen ---------------------------------------------------------------------
def test_a_digit_on_idle_picks_the_language_for_the_next_sale_only() -> None:
    p, panel, _ = port("2")
    assert p.idle_fields() == {"languages": ("en", "de")}
    assert p.idle_key(0.05) and panel.language == "de"
    p.begin()
    p.set_language("en")                # the card's 5F2D: the driver's own choice wins
    assert panel.language == "de"
    p.end()                             # the sale's last screens stay in the driver's language
    assert panel.language == "de"
    p.idle()                            # idle returns: the next driver is greeted in the home language
    assert panel.language == "en"
    p.begin()
    p.set_language("de")                # no choice this time: the card's preference applies
    assert panel.language == "de"


@pytest.mark.parametrize("key", ["CLEAR", "ENTER", "0", "3", "9"])
def test_other_keys_on_idle_change_nothing(key: str) -> None:
    p, panel, _ = port(key)
    assert not p.idle_key(0.05) and panel.language == "en"


def test_a_language_choice_nobody_uses_lapses_after_the_prompt_timeout() -> None:
    p, panel, clock = port("2", timeout=10.0)
    assert p.idle_key(0.05) and panel.language == "de"
    clock.t += 10.5
    assert p.idle_key(0.05) and panel.language == "en"     # idle is shown again, in the home language
    p.begin()
    assert panel.language == "en"


def test_one_language_shows_no_choice() -> None:
    p, panel, _ = port("1")
    panel.languages = ("en",)
    assert p.idle_fields() == {} and not p.idle_key(0.05)


# -- product -------------------------------------------------------------------------------------------------
def test_choose_product_by_digit_or_enter_for_any() -> None:
    p, panel, _ = port("3", "2")
    assert p.choose_product([DIESEL, SUPER], "EUR") == 1
    assert panel.screens == [(Screen.CHOOSE_PRODUCT, {"products": [DIESEL, SUPER], "currency": "EUR"})]
    assert port("ENTER")[0].choose_product([DIESEL, SUPER], "EUR") is None


@pytest.mark.parametrize(("keys", "why"), [(("CANCEL",), "cancelled"), ((), "timed out")])
def test_choose_product_ends_on_cancel_or_timeout(keys: tuple[str, ...], why: str) -> None:
    with pytest.raises(SaleCancelled, match=why):
        port(*keys)[0].choose_product([DIESEL, SUPER], "EUR")


# -- preset --------------------------------------------------------------------------------------------------
def test_enter_preset_types_whole_units_below_the_grant() -> None:
    p, panel, _ = port("2", "0", "0", "ENTER")        # 200 EUR would pass the 150 EUR grant: "0" not taken
    assert p.enter_preset(Preset.amount(15000), "EUR") == Preset.amount(2000)
    first = {"mode": "amount", "currency": "EUR", "max_cents": 15000}
    assert panel.screens[0] == (Screen.ENTER_PRESET, first)
    assert panel.screens[-1][1]["amount_cents"] == 2000
    p, panel, _ = port("3", "5", "ENTER")
    assert p.enter_preset(Preset.volume(4000), "EUR") == Preset.volume(3500)
    assert panel.screens[-1] == (Screen.ENTER_PRESET, {"mode": "litres", "max_cl": 4000, "volume_cl": 3500})


def test_enter_with_nothing_keeps_the_maximum_and_clear_starts_again() -> None:
    assert port("ENTER")[0].enter_preset(Preset.amount(15000), "EUR") == Preset.amount(15000)
    assert port("5", "CLEAR", "ENTER")[0].enter_preset(Preset.amount(15000), "EUR") == Preset.amount(15000)
    assert port("0", "ENTER")[0].enter_preset(Preset.amount(15000), "EUR") == Preset.amount(15000)


@pytest.mark.parametrize(("keys", "why"), [(("1", "CANCEL"), "cancelled"), (("1",), "timed out")])
def test_enter_preset_ends_on_cancel_or_timeout(keys: tuple[str, ...], why: str) -> None:
    with pytest.raises(SaleCancelled, match=why):
        port(*keys)[0].enter_preset(Preset.amount(15000), "EUR")


# -- PIN tries -----------------------------------------------------------------------------------------------
def test_offline_pin_shows_the_tries_left_when_the_card_tells_them() -> None:
    p, panel, _ = port()
    p.offline_pin(False, tries=2)
    pins = [f for s, f in panel.screens if s == Screen.ENTER_PIN]
    assert pins and all(f["tries"] == 2 for f in pins) and pins[-1]["stars"] == "****"
    p, panel, _ = port()
    p.offline_pin(False)
    assert all("tries" not in f for s, f in panel.screens if s == Screen.ENTER_PIN)
    p, panel, _ = port()
    p.offline_pin(True, tries=1)        # the last try has a screen of its own
    assert all("tries" not in f for s, f in panel.screens if s == Screen.ENTER_PIN_LAST)


# -- the idle screen's figures (firmware.terminal.serve) ----------------------------------------------------
def test_idle_shows_the_station_prices_payment_means_and_languages() -> None:
    p, _, _ = port()
    world = SimpleNamespace(programs=[SimpleNamespace(name="fleet"),
                                      SimpleNamespace(name="bank", sells_offline=True)],
                            adjuncts=[SimpleNamespace(name="loyalty")])
    host = SimpleNamespace(station=station())
    loop = SimpleNamespace(host=host, runner=SimpleNamespace(world=world), port=p)
    fields = idle_fields(loop)    # type: ignore[arg-type]
    assert fields == {"prices": [("Diesel", 1659), ("Super 95", 1789)], "currency": "EUR",
                      "payments": ["fleet", "bank", "loyalty"], "languages": ("en", "de")}
    view = build("idle", "en", **fields)
    assert [(f.label, f.value) for f in view.figures] == [("Diesel", "€1.659/L"), ("Super 95", "€1.789/L")]
    assert view.lines == ("We accept: Fleet cards, Bank cards, and Loyalty cards",)
    assert [o.label for o in view.options] == ["English", "Deutsch"]
    offline = idle_fields(loop, offline=True)     # type: ignore[arg-type]
    assert offline["payments"] == ["bank", "loyalty"]      # the registry is away: no fleet cards


@pytest.mark.parametrize(("tries", "last"), [(3, False), (1, True), (None, False)])
def test_the_emv_kernel_passes_the_cards_pin_try_counter_to_the_pin_screen(tries: int | None,
                                                                           last: bool) -> None:
    """EMV Book 3 10.5.1: the kernel reads the PIN Try Counter (9F17) before offline PIN; the bank program
    hands it to the port, which shows it (the last try has its own screen)."""
    port_ = ScriptedCardholder(offline_pin=[b"\x24\x12\x34"])
    prompts = Prompts(port_, home="en", after_pin=lambda: None, keys_left=lambda: True)
    entry = prompts.pin_entry("offline", tries, "4761739001010010")
    assert entry.offline is not None
    entry.offline.plain_pin_block_for_card()
    assert port_.pin_tries == [tries]
    p, panel, _ = port()
    p.offline_pin(last, tries=tries)
    screen, fields = panel.screens[0]
    assert screen == (Screen.ENTER_PIN_LAST if last else Screen.ENTER_PIN)
    assert fields.get("tries") == (None if last else tries)


@pytest.mark.parametrize(("answer", "kept"), [(Preset.amount(20000), True), (Preset.volume(1000), True),
                                              (Preset.amount(0), True), (Preset.amount(2000), False)])
def test_a_preset_outside_the_grant_is_never_used(answer: Preset, kept: bool) -> None:
    grant = Grant(Preset.amount(15000), nozzles=(1, 2), reference="A1")
    port_ = ScriptedCardholder(product=[0], preset=[answer])
    preset, nozzles = driver_limits(port_, station(), 1, grant)
    assert preset == (grant.preset if kept else answer) and nozzles == (1,)
