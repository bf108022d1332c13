"""Spoken prompts: ui.speech (what a screen says), drivers.panel.speaking (the panel that says it and the
keypad gesture that switches it) and the CLEAR key that gives a timed prompt more time
(firmware.terminal.cardholder). The panel under the speaking one is the real socket panel against the
simulator's panel server; the speaker is the memory:// backend (the espeak backend: test_audio.py)."""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import ConfigError, SaleCancelled
from contracts.screens import Screen
from drivers.audio import open_speaker
from drivers.audio.memory import MemorySpeaker
from drivers.panel.socket import SocketPanel
from drivers.panel.speaking import SpeakingPanel
from drivers.pinpad import PinPad
from firmware.config import load_config
from firmware.programs.base import Question
from firmware.terminal.cardholder import PanelCardholder
from hostsim.panel_server import PanelServer
from ui.catalog import catalogue
from ui.screens import LANGUAGES
from ui.speech import SPEECH_KEYS, VOICES, phrase, update, utterance

FIELDS: dict[str, Any] = {
    "pumps": "1,2,3", "apps": "1 VISA DEBIT  2 MAESTRO", "stars": "***", "reason": "wrong_pin", "pump": 2,
    "litres": "20.00", "amount": "35.00 EUR", "question": "odometer", "answer": "123", "card": "loyalty"}


# -- ui.speech: what each screen says -------------------------------------------------------------------
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("screen", list(Screen))
def test_every_screen_speaks_in_every_language(screen: Screen, language: str) -> None:
    said = utterance(screen, language, **FIELDS)
    assert said and said.endswith(".") and "{" not in said and "*" not in said


@pytest.mark.parametrize("language", sorted(set(LANGUAGES) | set(VOICES)))
def test_every_language_has_every_phrase_and_a_voice(language: str) -> None:
    assert language in VOICES
    own = catalogue(language)
    assert {f"speech.{k}" for k in SPEECH_KEYS} <= set(own)          # a missing phrase fails here
    if language != "en":
        assert all(own[f"speech.{k}"] != catalogue("en")[f"speech.{k}"] for k in SPEECH_KEYS)
    fields = {"count": 3, "name": "VISA", "key": 1, "pump": 2}
    for key in SPEECH_KEYS:
        assert phrase(key, language, **fields) == own[f"speech.{key}"].format(**fields)


def test_options_are_spoken_with_their_key_digits() -> None:
    said = utterance("select_pump", "en", pumps="1,2")
    assert said.startswith("Select pump. For Pump 1, press 1. For Pump 2, press 2. ")
    assert said.endswith(" Press CLEAR for more time.") and said.count("1") == 2
    said = utterance("choose_app", "en", apps="1 VISA DEBIT  2 MAESTRO")
    assert said.startswith("Choose application. For VISA DEBIT, press 1. For MAESTRO, press 2. ")
    assert said.count("MAESTRO") == 1                  # the option list is said once, the speech's way
    said = utterance("choose_app", "fr", apps="1 VISA DEBIT  2 MAESTRO")
    assert "Pour MAESTRO, appuyez sur 2." in said
    assert said.endswith("Pour plus de temps, appuyez sur CLEAR.")


@pytest.mark.parametrize("screen", ["enter_pin", "enter_pin_last", "attendant_sign_in"])
def test_a_secret_entry_says_only_how_many_digits(screen: str) -> None:
    for stars in ("****", "4711"):                 # even digits passed by mistake are never read out
        said = utterance(screen, "en", stars=stars)
        assert "Digits entered: 4." in said and "*" not in said
        assert not re.search(r"\d", said.replace("Digits entered: 4.", ""))
    assert update(screen, "fr", stars="**") == "Chiffres saisis : 2."


def test_a_warning_or_an_error_says_so_in_words() -> None:
    assert utterance("declined", "en", reason="wrong_pin").startswith("Error. Declined. Wrong PIN.")
    assert utterance("enter_pin_last", "de").startswith("Achtung. PIN eingeben.")
    assert not utterance("idle", "en").startswith(("Error", "Caution", "Info", "OK"))


def test_a_card_number_is_never_spoken() -> None:
    for number in ("4761739001010135", "4761 7390 0101 0135", "4761-7390-0101-0135"):
        said = utterance("declined", "en", reason=number)
        assert not re.search(r"\d", said), said
    assert "0135" in utterance("declined", "en", reason="**** 0135")    # a masked number: its last four


def test_an_unknown_language_speaks_english() -> None:
    assert utterance("idle", "xx") == "Welcome. Insert card."


# -- the speaking panel ---------------------------------------------------------------------------------
class Manual:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def speaking() -> Iterator[tuple[SpeakingPanel, PanelServer, MemorySpeaker, Manual]]:
    server = PanelServer().start()
    clock = Manual()
    speaker = open_speaker("memory://")
    assert isinstance(speaker, MemorySpeaker)
    panel = SpeakingPanel(SocketPanel("127.0.0.1", server.port), speaker, clock=clock)
    try:
        panel.show("idle")
        server.wait_for("idle", 5)
        yield panel, server, speaker, clock
    finally:
        panel.close()
        server.stop()


def answered(server: PanelServer, screen: str, keys: tuple[str, ...], prompt: Callable[[], Any]) -> Any:
    """Run a prompt; press the keys once its screen shows (keys before a prompt are flushed)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        since = server.mark()
        result = pool.submit(prompt)
        server.wait_for(screen, 5, since)
        server.press(*keys)
        return result.result(timeout=10)


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_clear_three_times_on_idle_switches_speech_on_then_off(speaking: Any) -> None:
    panel, server, speaker, _ = speaking
    panel.show("enter_pin", stars="")
    assert speaker.said == []                        # silent until switched on
    panel.show("idle")
    server.press("CLEAR", "CLEAR", "CLEAR")
    until(lambda: panel.speaking)
    assert speaker.said == [(phrase("on", "en") + " " + utterance("idle", "en"), "en")]
    server.press("CLEAR", "CLEAR", "CLEAR")
    until(lambda: not panel.speaking)
    assert speaker.texts()[-1] == "Speech off."
    assert panel.read_key(0.1) is None               # the gesture's keys are not handed on


def test_the_gesture_needs_three_presses_within_two_seconds(speaking: Any) -> None:
    panel, server, speaker, clock = speaking
    server.press("CLEAR", "CLEAR")
    time.sleep(0.3)
    clock.t = 2.5                                   # too slow: starts again
    server.press("CLEAR", "5", "CLEAR")             # another key in between starts again too
    time.sleep(0.3)
    assert not panel.speaking and speaker.said == []
    assert panel.read_key(1) == "5"
    server.press("CLEAR", "CLEAR")
    until(lambda: panel.speaking)


@pytest.mark.parametrize("screen", ["enter_pin", "select_pump", "question", "filling"])
def test_the_gesture_does_nothing_during_a_sale(speaking: Any, screen: str) -> None:
    panel, server, speaker, _ = speaking
    panel.show(screen, **FIELDS)
    server.press("CLEAR", "CLEAR", "CLEAR")
    assert [panel.read_key(2) for _ in range(3)] == ["CLEAR"] * 3
    assert not panel.speaking and speaker.said == []


def test_speech_stays_on_for_the_sale_and_ends_at_idle(speaking: Any) -> None:
    panel, _, speaker, _ = speaking
    panel.switch(True)
    panel.set_language("DE")                       # the card's 5F2D
    panel.show("reading")
    panel.show("lift_nozzle", pump=2, litres="40.00")
    panel.show("filling", pump=2, litres="1.00", amount="1.80 EUR")
    panel.show("filling", pump=2, litres="2.00", amount="3.60 EUR")      # a pump update: not repeated
    panel.show("thank_you", litres="2.00", amount="3.60 EUR")
    panel.set_language("en")
    panel.show("idle")
    assert not panel.speaking
    assert speaker.said[1:] == [(utterance("reading", "de"), "de"),
                                (utterance("lift_nozzle", "de", pump=2, litres="40.00"), "de"),
                                (utterance("filling", "de", pump=2, litres="1.00", amount="1.80 EUR"), "de"),
                                (utterance("thank_you", "de", litres="2.00", amount="3.60 EUR"), "de")]
    assert speaker.texts()[-1].startswith("Vielen Dank")


def test_no_pin_digit_is_ever_spoken_during_real_pin_entry(speaking: Any) -> None:
    panel, server, speaker, _ = speaking
    server.press("CLEAR", "CLEAR", "CLEAR")
    until(lambda: panel.speaking)
    port = PanelCardholder(panel, PinPad(panel, bytes(range(16)), None), None, timeout=10, home="en")
    block = answered(server, "enter_pin", ("9", "8", "CLEAR", "9", "8", "7", "6", "ENTER"),
                     lambda: port.pin_block("4761739001010135"))
    assert len(block) == 16
    during = speaker.texts()[1:]
    assert during[0] == utterance("enter_pin", "en", stars="")
    assert during[1:] == [f"Digits entered: {n}." for n in (1, 2, 0, 1, 2, 3, 4)]
    assert not any(d in text for text in speaker.texts() for d in "9876")


def test_a_question_answer_is_spoken_back_digit_by_digit(speaking: Any) -> None:
    panel, server, speaker, _ = speaking
    panel.switch(True)
    port = PanelCardholder(panel, PinPad(panel, bytes(range(16)), None), None, timeout=10, home="en")
    assert answered(server, "question", ("4", "2", "ENTER"), lambda: port.ask(Question("odometer"))) == "42"
    assert speaker.texts()[-3:] == [utterance("question", "en", question="odometer", answer=""), "4", "4 2"]


# -- more time on a timed prompt -------------------------------------------------------------------------
class Keys:
    """A scripted panel: None lets the read's timeout pass on the clock."""

    languages = ("en",)

    def __init__(self, clock: Manual, *keys: str | None) -> None:
        self.clock, self.keys, self.extended = clock, list(keys), 0
        self.warned: list[float] = []

    def show(self, screen: str, **fields: Any) -> None:
        pass

    def flush_keys(self) -> None:
        pass

    def set_language(self, code: str) -> None:
        pass

    def read_key(self, timeout: float) -> str | None:
        key = self.keys.pop(0) if self.keys else None
        if key is None:
            self.clock.t += timeout
        return key

    def more_time(self) -> None:
        self.extended += 1

    def time_short(self) -> None:
        self.warned.append(self.clock.t)


def prompt(*keys: str | None) -> tuple[PanelCardholder, Keys]:
    clock = Manual()
    panel = Keys(clock, *keys)
    port = PanelCardholder(panel, PinPad(panel, bytes(16), None), None, timeout=10, home="en", clock=clock,
                           more_time=30)
    return port, panel


def test_clear_gives_a_prompt_more_time() -> None:
    idle = [None] * 100                           # 100 x 0.25 s = 25 s without a key: past the 10 s
    port, panel = prompt("CLEAR", *idle, "2")
    assert port.choose_pump([1, 2]) == 2 and panel.extended == 1
    with pytest.raises(SaleCancelled, match="timed out"):
        prompt(*idle, "2")[0].choose_pump([1, 2])


def test_the_time_left_is_capped_however_often_clear_is_pressed() -> None:
    port, panel = prompt(*["CLEAR"] * 20)
    with pytest.raises(SaleCancelled, match="timed out"):
        port.choose(["VISA", "MAESTRO"])
    assert panel.extended == 20 and panel.clock.t == pytest.approx(40, abs=0.3)    # 10 + 30, not 10 + 600


def test_clear_in_a_typed_answer_clears_it_and_adds_time() -> None:
    port, panel = prompt("1", "CLEAR", *[None] * 60, "4", "2", "ENTER")
    assert port.ask(Question("vehicle")) == "42" and panel.extended == 1


def test_more_time_is_announced_when_speech_is_on(speaking: Any) -> None:
    panel, server, speaker, _ = speaking
    panel.switch(True)
    port = PanelCardholder(panel, PinPad(panel, bytes(16), None), None, timeout=10, home="en")
    assert answered(server, "select_pump", ("CLEAR", "1"), lambda: port.choose_pump([1, 2])) == 1
    assert speaker.texts()[-1] == "More time. " + utterance("select_pump", "en", pumps="1,2")   # said again


def test_a_prompt_warns_before_it_times_out_and_again_after_more_time() -> None:
    port, panel = prompt(*[None] * 30, "CLEAR", *[None] * 200)    # 10 s prompt: warned at 5 s left
    with pytest.raises(SaleCancelled, match="timed out"):
        port.choose_pump([1, 2])
    # CLEAR at 7.5 s (2.5 s left) leaves 32.5 s: the prompt ends at 40 s, warned again 5 s before
    assert panel.warned == [pytest.approx(5.0, abs=0.3), pytest.approx(35.0, abs=0.3)]
    assert panel.clock.t == pytest.approx(40.0, abs=0.3)


def test_the_speaking_panel_says_time_runs_short_after_the_prompt(speaking: Any) -> None:
    panel, _, speaker, _ = speaking
    panel.switch(True)
    panel.show("select_pump", pumps="1,2")
    panel.time_short()
    assert speaker.said[-1] == ("Time is running out. Press CLEAR for more time.", "en")
    assert speaker.interrupts == 2                  # switching on and the prompt; the warning waits its turn


# -- configuration -----------------------------------------------------------------------------------------
def test_audio_and_more_time_are_configured(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[terminal]\nid = "T1"\nstation = "S1"\n[accessibility]\nmore_time = 45\n')
    assert load_config(path, profile="pi").devices.audio == "espeak://"
    sim = load_config(path, profile="sim")
    assert sim.devices.audio == "memory://" and sim.accessibility.more_time == 45.0
    path.write_text('[terminal]\nid = "T1"\nstation = "S1"\n[accessibility]\nmore_time = 0\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, profile="sim")
    assert err.value.context["key"] == "accessibility.more_time"


class Racing:
    """A panel whose keypad sends CLEAR the moment a screen is put up, before show() returns."""

    languages = ("en",)

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.taken = threading.Event()

    def show(self, screen: str, **fields: Any) -> None:
        if screen == "enter_pin":
            self.keys.append("CLEAR")
            assert self.taken.wait(2)          # the key reader has it before the show is over
            time.sleep(0.1)

    def read_key(self, timeout: float) -> str | None:
        if self.keys:
            self.taken.set()
            return self.keys.pop(0)
        time.sleep(min(timeout, 0.01))
        return None

    def flush_keys(self) -> None:
        pass

    def set_language(self, code: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_clear_pressed_as_the_pin_screen_appears_is_not_taken_for_the_gesture() -> None:
    panel = SpeakingPanel(Racing(), MemorySpeaker())
    try:
        panel.show("idle")
        panel.show("enter_pin", stars="")
        assert panel.read_key(1) == "CLEAR"
    finally:
        panel.close()


def test_what_else_the_panel_offers_passes_through() -> None:
    inner = Racing()
    inner.set_theme = lambda name: setattr(inner, "theme", name)      # type: ignore[attr-defined]
    panel = SpeakingPanel(inner, MemorySpeaker())
    try:
        panel.set_theme("high_contrast")
        assert inner.theme == "high_contrast"                          # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            panel.no_such_thing  # noqa: B018
    finally:
        panel.close()


class Slow(Racing):
    """The key reader is held up between taking a key from the panel and handing it on."""

    def read_key(self, timeout: float) -> str | None:
        if self.keys:
            key = self.keys.pop(0)
            self.taken.set()
            time.sleep(0.3)
            return key
        time.sleep(min(timeout, 0.01))
        return None


def test_a_key_pressed_before_a_prompt_is_flushed_even_while_the_reader_holds_it() -> None:
    inner = Slow()
    panel = SpeakingPanel(inner, MemorySpeaker())
    try:
        panel.show("select_pump", pumps="1,2")
        inner.keys.append("7")
        assert inner.taken.wait(2)
        panel.flush_keys()                   # a PIN prompt starts now: the 7 was pressed before it
        assert panel.read_key(0.6) is None
        inner.keys.append("8")
        assert panel.read_key(2) == "8"
    finally:
        panel.close()


def test_a_language_picked_on_idle_reads_idle_again_in_it(speaking: Any) -> None:
    panel, server, speaker, _ = speaking
    server.press("CLEAR", "CLEAR", "CLEAR")
    until(lambda: panel.speaking)
    panel.set_language("de")                          # the driver picked German on the idle screen
    panel.show("idle")
    assert speaker.said[-1] == (utterance("idle", "de"), "de")
    assert panel.speaking                             # still the same session: no sale has ended
