"""The scenario player's stepping, playing and stopping, on a scenario of its own against a fake forecourt.

The real scenarios on a real Simulator are in tests/test_window_sim.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hostsim import window_player
from hostsim.window_player import ScenarioPlayer


class Panel:
    def __init__(self) -> None:
        self.listeners: list[Any] = []
        self.pressed: list[str] = []

    def press(self, *keys: str) -> None:
        self.pressed.extend(keys)


class Cards:
    def __init__(self) -> None:
        self.removed = 0

    def remove(self) -> None:
        self.removed += 1


class Line:
    def __init__(self) -> None:
        self.pumps: dict[int, Any] = {}


class Sim:
    def __init__(self, state: Path) -> None:
        self.panel, self.cards, self.pump_line = Panel(), Cards(), Line()
        self.terminal_pumps = (1,)
        self.acquirer_rules: Any = "rules"
        self.state = state


def demo(run: Any) -> None:
    run.remove()
    run.pin("1234")
    run.sim.acquirer_rules = "changed by the scenario"
    run.check(run.sim.cards.removed == 1, "card taken out once")


def broken(run: Any) -> None:
    run.remove()
    raise TimeoutError("screen idle not shown")


@pytest.fixture
def player(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScenarioPlayer:
    monkeypatch.setattr(window_player, "SCENARIOS", {"demo": demo, "broken": broken})
    return ScenarioPlayer(Sim(tmp_path), names=["demo", "broken"])


def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_step_by_step(player: ScenarioPlayer) -> None:
    sim = player.sim
    player.step_once()
    until(lambda: player.state == "stepping")
    assert player.step == "take the card out" and sim.cards.removed == 0     # waits for the Step
    player.step_once()
    until(lambda: player.step == "key the PIN ****" and player.state == "stepping")
    assert sim.cards.removed == 1 and sim.panel.pressed == []
    player.step_once()
    player.join(5)
    assert player.state == "ok" and player.failures == [] and player.steps_done == 2
    assert sim.panel.pressed == ["1", "2", "3", "4", "ENTER"]
    assert sim.acquirer_rules == "rules" and sim.panel.listeners == []      # the forecourt is left as found


def test_play_at_speed_and_a_failure(player: ScenarioPlayer) -> None:
    player.play()
    player.join(5)
    assert player.state == "ok"
    player.choose(1)
    assert player.name == "broken" and player.state == "idle"
    player.play()
    player.join(5)
    assert player.state == "failed" and player.failures == ["TimeoutError: screen idle not shown"]


def test_stop_ends_at_the_next_step(player: ScenarioPlayer) -> None:
    player.step_once()
    until(lambda: player.state == "stepping")
    player.choose(1)                       # not while a scenario runs
    assert player.name == "demo"
    player.stop()
    player.join(5)
    assert player.state == "stopped" and player.sim.cards.removed == 0


def test_step_then_play_runs_the_rest_without_stopping(player: ScenarioPlayer) -> None:
    player.step_once()
    until(lambda: player.state == "stepping")
    player.play()
    player.join(5)
    assert player.state == "ok" and player.sim.panel.pressed[-1] == "ENTER"
