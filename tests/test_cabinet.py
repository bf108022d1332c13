"""firmware.terminal.cabinet on simulated pins: the door takes the terminal out of service while open, the
tamper switch until a technician clears its latch (kept in the journal across restarts), the paper sensor
warns; each change is one event; the lamps follow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.gpio.devices import Buzzer, Led, PaperSensor, Switch
from drivers.gpio.sim import SimPins
from firmware.sale.journal import Journal
from firmware.terminal.cabinet import TAMPER_LATCH, Cabinet

DOOR, TAMPER, PAPER, READY, FAULT, BUZZER = 5, 6, 21, 13, 19, 26


@pytest.fixture
def pins() -> Iterator[SimPins]:
    p = SimPins()
    for n in (DOOR, TAMPER, PAPER):
        p.drive(n, False)
    yield p
    p.close()


def build(pins: SimPins, journal: Journal, events: list[tuple[str, str]]) -> Cabinet:
    return Cabinet(journal, lambda sev, code, detail: events.append((sev, code)),
                   door=Switch(pins, DOOR, name="door", active_low=False, bounce_ms=0),
                   tamper=Switch(pins, TAMPER, name="tamper", active_low=False, bounce_ms=0),
                   paper=PaperSensor(pins, PAPER, active_low=False, bounce_ms=0),
                   led_ready=Led(pins, READY, name="led_ready"), led_fault=Led(pins, FAULT, name="led_fault"),
                   buzzer=Buzzer(pins, BUZZER))


def test_door_open_is_out_of_service_until_shut(pins: SimPins, tmp_path: Path) -> None:
    journal, events = Journal(tmp_path / "journal.db"), []
    cab = build(pins, journal, events)
    cab.start()
    assert cab.out_of_service() is None and events == []
    pins.drive(DOOR, True)
    assert cab.out_of_service() == "door_open"
    assert events == [("alarm", "door_open")]
    cab.lamps(in_service=False, online=True)
    assert pins.level(FAULT) and not pins.level(READY)
    pins.drive(DOOR, False)
    assert cab.out_of_service() is None and events[-1] == ("info", "door_closed")
    cab.lamps(in_service=True, online=True)
    assert pins.level(READY) and not pins.level(FAULT)
    cab.close()
    journal.close()


def test_tamper_latches_across_a_restart_until_cleared(pins: SimPins, tmp_path: Path) -> None:
    journal, events = Journal(tmp_path / "journal.db"), []
    cab = build(pins, journal, events)
    cab.start()
    pins.drive(TAMPER, True)
    pins.drive(TAMPER, False)                     # the housing shut again: still out of service
    pins.drive(TAMPER, True)                      # a second trip raises no second alarm
    assert cab.out_of_service() == "tamper"
    assert events == [("alarm", "tamper")]
    assert cab.buzzer is not None and cab.buzzer.wait(5)
    cab.close()
    journal.close()
    journal = Journal(tmp_path / "journal.db")    # the terminal restarted
    events.clear()
    restarted = Cabinet(journal, lambda sev, code, detail: events.append((sev, code)))
    assert restarted.out_of_service() == "tamper"
    journal.delete(TAMPER_LATCH)                  # what `forecourt provision tamper-clear` does
    assert restarted.out_of_service() is None and restarted.out_of_service() is None
    assert events == [("info", "tamper_cleared")]     # reported once
    journal.close()


def test_a_door_found_open_at_start_is_reported(pins: SimPins, tmp_path: Path) -> None:
    pins.drive(DOOR, True)
    journal, events = Journal(tmp_path / "journal.db"), []
    cab = build(pins, journal, events)
    cab.start()
    assert cab.out_of_service() == "door_open" and events == [("alarm", "door_open")]
    cab.close()
    journal.close()


def test_paper_low_warns_and_blinks_the_fault_lamp(pins: SimPins, tmp_path: Path) -> None:
    journal, events = Journal(tmp_path / "journal.db"), []
    cab = build(pins, journal, events)
    cab.start()
    pins.drive(PAPER, True)
    assert events == [("warning", "paper_low")] and cab.out_of_service() is None
    cab.lamps(in_service=True, online=True)
    seen = set()
    deadline = time.monotonic() + 3
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(pins.level(FAULT))
        time.sleep(0.05)
    assert seen == {True, False} and pins.level(READY)     # blinking, still taking cards
    pins.drive(PAPER, False)
    assert events[-1] == ("info", "paper_ok")
    cab.close()
    journal.close()


def test_without_gpio_nothing_is_out_of_service(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    cab = Cabinet(journal, lambda *a: None)
    cab.start()
    cab.lamps(in_service=True, online=False)
    assert cab.out_of_service() is None
    journal.close()


def test_a_door_shut_while_the_terminal_was_off_is_reported_at_start(tmp_path: Path) -> None:
    journal, events = Journal(tmp_path / "journal.db"), []

    def boot(door_open: bool) -> None:            # the terminal starts with the door as it is now
        pins = SimPins()
        for n in (DOOR, TAMPER, PAPER):
            pins.drive(n, False)
        pins.drive(DOOR, door_open)
        cab = build(pins, journal, events)
        cab.start()
        cab.close()
        pins.close()

    boot(True)
    boot(False)                                   # shut while the terminal was off
    assert events == [("alarm", "door_open"), ("info", "door_closed")]
    boot(False)                                   # a restart with nothing changed reports nothing
    assert len(events) == 2
    journal.close()
