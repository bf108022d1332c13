"""The simulator window's layout and input against a fake simulator, ui.render, and PygamePanel.

All under SDL's dummy video driver: no display needed. The swipe button talks to a real SwipeServer and the
terminal's own TCP magstripe reader on loopback; the real Simulator behind the window is covered by the e2e
tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.pump import PumpState
from contracts.track2 import Track2
from drivers.msr import open_msr
from hostsim.cards.emv_profile import profile_names
from hostsim.swipe_server import SwipeServer
from hostsim.window import SIZE, SimulatorWindow, picker_cards, run_window
from hostsim.window_layout import CARD_MAX_ROWS, fit_scale, layout
from hostsim.world import CardProfile, card_index, load_cards
from ui.render import SCREEN_BG, draw_screen, draw_text_block

RECEIPT = "\n".join(["      FORECOURT TEST STATION", "", "Volume                             20.00 L",
                     "-" * 42, "TOTAL                            33.18 EUR"])


@pytest.fixture(autouse=True)
def dummy_video(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame.display.init()
    pygame.font.init()
    yield
    pygame.quit()


class FakePanel:
    def __init__(self) -> None:
        self.current: dict[str, Any] | None = {"screen": "enter_pin",
                                               "lines": ["Enter PIN", "**", "Press ENTER"],
                                               "fields": {"stars": "**"}}
        self.pressed: list[str] = []
        self.connected = True

    def press(self, *keys: str) -> None:
        if not self.connected:
            raise ConnectionError("terminal panel not connected")
        self.pressed.extend(keys)


class FakeCards:
    def __init__(self) -> None:
        self.card: Any = None
        self.inserted: list[Any] = []
        self.removed = 0

    def insert(self, card: Any) -> None:
        self.card = card
        self.inserted.append(card)

    def remove(self) -> None:
        self.card = None
        self.removed += 1


class FakePump:
    def __init__(self) -> None:
        self.grades = {1: "diesel", 2: "petrol95"}
        self.state = PumpState.RESET
        self.nozzle, self.nozzle_out = 0, False
        self.volume_cl = self.amount_cents = 0
        self.flow_cl_per_s = 100.0
        self.calls: list[tuple[Any, ...]] = []

    def lift(self, nozzle: int) -> None:
        self.calls.append(("lift", nozzle))
        self.nozzle, self.nozzle_out = nozzle, True

    def hang_up(self) -> None:
        self.calls.append(("hang_up",))
        self.nozzle_out = False

    def dispense(self, volume_cl: int, *, wait: bool = True) -> int:
        self.calls.append(("dispense", volume_cl, wait))
        return 0


class FakeLine:
    def __init__(self) -> None:
        self.pumps = {1: FakePump()}
        self.noise_interval: float | None = None

    def pump(self, number: int) -> FakePump:
        return self.pumps[number]


class FakePrinter:
    def __init__(self) -> None:
        self.receipts: list[str] = []


class FakeSwipe:
    """The swipe server unplugged: the terminal's reader is not connected."""

    def swipe(self, track2_content: str) -> None:
        raise ConnectionError("terminal magstripe reader not connected")


class FakeAcquirer:
    serving = False

    def paused_for(self) -> float:
        return 0.0


class FakeSim:
    """Nothing started: the status strip reads everything down."""

    def __init__(self, state: Path) -> None:
        self.panel, self.cards = FakePanel(), FakeCards()
        self.pump_line, self.printer = FakeLine(), FakePrinter()
        self.swipe: Any = FakeSwipe()
        self.state = state
        self.terminal_config = state / "terminal" / "terminal.toml"
        self.acquirer = FakeAcquirer()
        self.broker_port = 0
        self.mosquitto = self.registry = self.terminal = None

    def supervise_terminal(self) -> bool:
        return False                      # no terminal runs to be started again


@pytest.fixture
def sim(tmp_path: Path) -> FakeSim:
    return FakeSim(tmp_path)


@pytest.fixture
def window(sim: FakeSim) -> SimulatorWindow:
    return SimulatorWindow(sim, profiles=load_cards())


def button(window: SimulatorWindow, action: str, arg: Any = None) -> pygame.Rect:
    return next(b.rect for b in window.buttons if b.action == action and (arg is None or b.arg == arg))


def pixels(surface: pygame.Surface, rect: pygame.Rect) -> bytes:
    return pygame.image.tobytes(surface.subsurface(rect), "RGB")


def test_keypad_buttons_send_their_keys(window: SimulatorWindow, sim: FakeSim) -> None:
    for key in ("1", "2", "3", "4", "0", "CLEAR", "ENTER", "CANCEL"):
        hit = window.handle_click(button(window, "key", key).center)
        assert hit is not None and hit.label == key
    assert sim.panel.pressed == ["1", "2", "3", "4", "0", "CLEAR", "ENTER", "CANCEL"]


def test_keypad_has_every_panel_key(window: SimulatorWindow) -> None:
    keys = {b.arg for b in window.buttons if b.action == "key"}
    assert keys == set("0123456789") | {"ENTER", "CANCEL", "CLEAR"}


def test_click_outside_any_button_does_nothing(window: SimulatorWindow, sim: FakeSim) -> None:
    assert window.handle_click((window.screen_rect.centerx, window.screen_rect.centery)) is None
    assert sim.panel.pressed == [] and sim.cards.inserted == [] and sim.pump_line.pump(1).calls == []


def assert_layout_fits(window: SimulatorWindow) -> None:
    bounds = pygame.Rect((0, 0), SIZE)
    for i, a in enumerate(window.buttons):
        assert bounds.contains(a.rect), a
        for b in window.buttons[i + 1:]:
            assert not a.rect.colliderect(b.rect), (a.label, b.label)
    panels = window.layout.panels
    for i, a in enumerate(panels):
        assert bounds.contains(a)
        for b in panels[i + 1:]:
            assert not a.colliderect(b)
    for b in window.buttons:     # each button on its own panel
        assert any(panel.contains(b.rect) for panel in panels), b
    assert window.receipt_rect.h >= 250, window.receipt_rect     # the receipt stays readable
    assert window.log_rect.h >= 250, window.log_rect
    status = window.layout.slot_status
    assert status.w > 0 and window.card_rect.contains(status)
    assert not any(status.colliderect(b.rect) for b in window.buttons)


def test_buttons_do_not_overlap_and_stay_in_the_window(window: SimulatorWindow) -> None:
    assert len(window.profiles) == len(load_cards()) >= 10
    assert_layout_fits(window)


@pytest.mark.parametrize("count", [1, 4, CARD_MAX_ROWS, CARD_MAX_ROWS + 1, 10, 18])
def test_layout_fits_any_number_of_cards(sim: FakeSim, count: int) -> None:
    profiles = [CardProfile(f"card {i} " + "with a long name " * 3, "blank", {}) for i in range(count)]
    w = SimulatorWindow(sim, profiles=profiles)
    assert_layout_fits(w)
    assert [b.arg for b in w.buttons if b.action == "insert"] == list(range(count))
    w.draw(pygame.Surface(SIZE))


def test_the_card_list_is_grouped_by_kind(window: SimulatorWindow) -> None:
    by_y: dict[int, list[str]] = {}
    for b in window.buttons:
        if b.action == "insert":
            by_y.setdefault(b.rect.y, []).append(window.profiles[b.arg].kind)
    assert all(len(set(kinds)) == 1 for kinds in by_y.values())     # a row never mixes kinds
    kinds = [window.profiles[b.arg].kind for b in sorted((b for b in window.buttons if b.action == "insert"),
                                                          key=lambda b: (b.rect.y, b.rect.x))]
    assert kinds == sorted(kinds, key=["fleet", "emv", "blank", "tag"].index)
    many = [CardProfile(f"c{i}", "emv", {}) for i in range(CARD_MAX_ROWS + 1)]
    two = [b.rect for b in layout(many, {1: {1: "diesel"}}).buttons if b.action == "insert"]
    assert len({r.x for r in two}) == 2                            # a long group takes two columns


def test_swipe_button_sits_next_to_remove(window: SimulatorWindow) -> None:
    swipe, remove = button(window, "swipe"), button(window, "remove")
    assert swipe.y == remove.y and swipe.right < remove.x and remove.x - swipe.right <= 12
    assert window.card_rect.contains(swipe)


def test_keyboard_keys_go_to_the_terminal(window: SimulatorWindow, sim: FakeSim) -> None:
    events = [pygame.event.Event(pygame.KEYDOWN, key=k, mod=0)
              for k in (pygame.K_7, pygame.K_KP3, pygame.K_RETURN, pygame.K_ESCAPE, pygame.K_BACKSPACE,
                        pygame.K_a)]
    assert window.handle_events(events)
    assert sim.panel.pressed == ["7", "3", "ENTER", "CANCEL", "CLEAR"]


def test_window_close_and_ctrl_q_quit(window: SimulatorWindow) -> None:
    assert not window.handle_events([pygame.event.Event(pygame.QUIT)])
    assert not window.handle_events([pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q,
                                                        mod=pygame.KMOD_LCTRL)])
    assert window.handle_events([pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q, mod=0)])


def test_key_while_terminal_disconnected_is_reported_not_raised(window: SimulatorWindow,
                                                                sim: FakeSim) -> None:
    sim.panel.connected = False
    window.handle_click(button(window, "key", "5").center)
    assert "not connected" in window.status


def test_card_picker_inserts_the_clicked_profile(window: SimulatorWindow, sim: FakeSim) -> None:
    profiles = load_cards()
    window.handle_click(button(window, "insert", 1).center)
    assert len(sim.cards.inserted) == 1
    assert sim.cards.inserted[0].__class__ is profiles[1].make().__class__
    assert window.inserted == 1
    window.handle_click(button(window, "remove").center)
    assert sim.cards.removed == 1 and sim.cards.card is None and window.inserted is None


def test_card_picker_lists_every_profile(sim: FakeSim) -> None:
    profiles = [CardProfile(f"card {i}", "blank", {}) for i in range(3)]
    w = SimulatorWindow(sim, profiles=profiles)
    assert [b.label for b in w.buttons if b.action == "insert"] == ["card 0", "card 1", "card 2"]
    w.handle_click(button(w, "insert", 2).center)
    assert w.inserted == 2 and len(sim.cards.inserted) == 1


def test_lift_and_hang_up_buttons_drive_the_pump(window: SimulatorWindow, sim: FakeSim) -> None:
    pump = sim.pump_line.pump(1)
    assert [b.label for b in window.buttons if b.action == "lift"] == ["Lift nozzle 1", "Lift nozzle 2"]
    window.handle_click(button(window, "lift", (1, 2)).center)
    window.handle_click(button(window, "hang_up").center)
    assert pump.calls == [("lift", 2), ("hang_up",)]


def test_squeeze_flows_only_while_held_and_filling(window: SimulatorWindow, sim: FakeSim) -> None:
    pump = sim.pump_line.pump(1)
    squeeze = button(window, "squeeze").center
    window.handle_click(squeeze)          # not authorized: the trigger does nothing
    window.tick()
    assert pump.calls == []
    pump.state = PumpState.FILLING
    window.tick()
    assert pump.calls == [("dispense", 20, False)]     # 0.2 s ahead at 1 L/s
    window.tick()
    assert len(pump.calls) == 1                         # nothing new flowed: nothing more asked
    pump.volume_cl = 15
    window.tick()
    assert pump.calls[-1] == ("dispense", 15, False)
    window.handle_events([pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=squeeze)])
    pump.volume_cl = 35
    window.tick()
    assert len(pump.calls) == 2 and window.squeezing is None


def test_space_bar_is_the_trigger(window: SimulatorWindow, sim: FakeSim) -> None:
    pump = sim.pump_line.pump(1)
    pump.state = PumpState.FILLING
    window.handle_events([pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE, mod=0)])
    assert window.squeezing == 1 and pump.calls == [("dispense", 20, False)]
    window.handle_events([pygame.event.Event(pygame.KEYUP, key=pygame.K_SPACE, mod=0)])
    assert window.squeezing is None


def test_draw_shows_screen_lines_and_receipt(window: SimulatorWindow, sim: FakeSim) -> None:
    surface = pygame.Surface(SIZE)
    sim.panel.current = {"screen": "idle", "lines": [], "fields": {}}
    window.draw(surface)
    blank_screen, blank_receipt = pixels(surface, window.screen_rect), pixels(surface, window.receipt_rect)
    sim.panel.current = {"screen": "idle", "lines": ["Welcome", "Insert card"], "fields": {}}
    sim.printer.receipts.append(RECEIPT)
    pump = sim.pump_line.pump(1)
    pump.state, pump.volume_cl, pump.amount_cents, pump.nozzle_out, pump.nozzle = \
        PumpState.FILLING, 1234, 2047, True, 1
    window.draw(surface)
    assert pixels(surface, window.screen_rect) != blank_screen
    assert pixels(surface, window.receipt_rect) != blank_receipt


def test_draw_before_the_terminal_connects(window: SimulatorWindow, sim: FakeSim) -> None:
    sim.panel.current = None
    window.starting = True
    window.draw(pygame.Surface(SIZE))


def test_run_window_with_a_given_sim(sim: FakeSim, tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    assert run_window(sim=sim, max_frames=3, screenshot=shot, fps=1000) == 0
    assert pygame.image.load(str(shot)).get_size() == SIZE


def test_draw_screen_on_a_plain_surface() -> None:
    surface = pygame.Surface((400, 240))
    surface.fill((255, 0, 255))
    rect = pygame.Rect(0, 0, 400, 240)
    draw_screen(surface, rect, [])
    empty = pixels(surface, rect)
    assert surface.get_at((200, 120))[:3] == SCREEN_BG
    draw_screen(surface, rect, ["Enter PIN", "****", "Press ENTER"], title="enter_pin")
    assert pixels(surface, rect) != empty


def test_draw_screen_shrinks_long_lines_to_fit() -> None:
    surface = pygame.Surface((200, 120))
    draw_screen(surface, (0, 0, 200, 120), ["Northwind fleet card, limit used up", "x"])


def test_draw_text_block_lines_up_columns_without_a_monospace_font() -> None:
    surface = pygame.Surface((420, 200))
    surface.fill((255, 255, 255))
    before = pixels(surface, surface.get_rect())
    draw_text_block(surface, surface.get_rect(), RECEIPT, columns=42, mono_path=None)
    assert pixels(surface, surface.get_rect()) != before


def test_pygame_panel_shows_screens_and_reads_keys() -> None:
    from drivers.panel.pygame_panel import PygamePanel

    panel = PygamePanel(fullscreen=False)
    try:
        screen = pygame.display.get_surface()
        assert screen.get_size() == (800, 480)
        black = pixels(screen, screen.get_rect())
        panel.show("enter_pin", stars="**")
        assert pixels(screen, screen.get_rect()) != black
        for key in (pygame.K_5, pygame.K_RETURN, pygame.K_ESCAPE, pygame.K_BACKSPACE, pygame.K_a):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        assert [panel.read_key(0.5) for _ in range(4)] == ["5", "ENTER", "CANCEL", "CLEAR"]
        assert panel.read_key(0.05) is None
    finally:
        panel.close()
    assert panel.read_key(0.01) is None


def test_pygame_panel_fullscreen_on_the_device() -> None:
    from drivers.panel import open_panel

    panel = open_panel("pygame://")
    try:
        panel.show("idle")     # SDL may give the display's own mode; the screen is drawn to fill it
        screen = pygame.display.get_surface()
        glass = screen.get_at((screen.get_width() // 40 + 8, screen.get_height() // 2))
        assert glass[:3] == SCREEN_BG
    finally:
        panel.close()


@pytest.fixture
def swipe_server() -> Iterator[SwipeServer]:
    server = SwipeServer("127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()


def test_swipe_sends_the_inserted_cards_track2(window: SimulatorWindow, sim: FakeSim,
                                                  swipe_server: SwipeServer) -> None:
    sim.swipe = swipe_server
    reader = open_msr(f"tcp://127.0.0.1:{swipe_server.port}")
    assert reader is not None
    try:
        reader.flush()                     # connects the reader
        swipe_server.wait_connected(5)
        broken = card_index("visa_chip_broken")
        window.handle_click(button(window, "insert", broken).center)
        hit = window.handle_click(button(window, "swipe").center)
        assert hit is not None and hit.label == "Swipe card"
        track = reader.wait_swipe(5)
        assert isinstance(track, Track2)
        assert track.raw == window.profiles[broken].track2 == "4761739001010143=31062010000000000000"
        assert track.pan == "4761739001010143" and track.service_code == "201"
        assert repr(track) == "Track2(pan='476173******0143')"
        assert window.status == f"swiped: {window.profiles[broken].name}"
        assert "4761739001010143" not in window.status        # never track data on the screen
        assert reader.wait_swipe(0.05) is None                 # one click, one swipe
    finally:
        reader.close()


def test_swipe_before_the_reader_connects_is_reported_not_raised(window: SimulatorWindow, sim: FakeSim,
                                                                  swipe_server: SwipeServer) -> None:
    sim.swipe = swipe_server                                   # nobody connected to it
    window.handle_click(button(window, "insert", card_index("magstripe_only")).center)
    window.handle_click(button(window, "swipe").center)
    assert window.status == "swipe not sent: terminal magstripe reader not connected"


@pytest.mark.parametrize("name", ["ACME fleet card (PIN 1234)", "Unknown card (no fleet application)",
                                  "mc_cda_offline_pin"])
def test_swipe_a_card_without_a_stripe(window: SimulatorWindow, sim: FakeSim, name: str) -> None:
    sim.swipe = SwipeRecorder()
    window.handle_click(button(window, "insert", card_index(name)).center)
    window.handle_click(button(window, "swipe").center)
    assert window.status == "this card has no magnetic stripe"
    assert sim.swipe.swiped == []


def test_swipe_with_no_card_picked_yet(window: SimulatorWindow, sim: FakeSim) -> None:
    sim.swipe = SwipeRecorder()
    window.handle_click(button(window, "swipe").center)
    assert window.status == "insert a card first"
    assert sim.swipe.swiped == []


def test_swipe_after_pulling_the_card_swipes_that_card(window: SimulatorWindow, sim: FakeSim) -> None:
    """EMV fallback: the driver pulls the card the chip could not read and swipes it."""
    sim.swipe = SwipeRecorder()
    window.handle_click(button(window, "insert", card_index("visa_chip_broken")).center)
    sim.cards.remove()                     # taken out behind the window's back (a scenario, the terminal)
    window.handle_click(button(window, "swipe").center)
    assert window.inserted is None and window.status == "swiped: Visa, chip broken (swipe it)"
    assert sim.swipe.swiped == ["4761739001010143=31062010000000000000"]


class SwipeRecorder:
    def __init__(self) -> None:
        self.swiped: list[str] = []

    def swipe(self, track2_content: str) -> None:
        self.swiped.append(track2_content)


def test_draw_with_a_card_inserted_and_long_labels(window: SimulatorWindow, sim: FakeSim) -> None:
    window.handle_click(button(window, "insert", card_index("mc_cda_offline_pin")).center)
    surface = pygame.Surface(SIZE)
    window.draw(surface)
    label = window.text_fit(surface, window.profiles[card_index("mc_cda_offline_pin")].name, 120, (0, 0))
    assert label.w <= 120


def test_fit_scale_shrinks_only_for_a_small_display() -> None:
    assert fit_scale(SIZE, (1920, 1080)) == 1.0
    scale = fit_scale(SIZE, (1024, 768))
    assert scale < 1.0 and SIZE[0] * scale <= 1024 and SIZE[1] * scale <= 768


def test_run_window_scales_down_on_a_small_display(sim: FakeSim, tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    assert run_window(sim=sim, max_frames=2, screenshot=shot, fps=1000, display=(1024, 768)) == 0
    assert pygame.image.load(str(shot)).get_size() == SIZE          # the frame is drawn at full size


def test_a_click_on_a_scaled_window_hits_the_button_under_it(window: SimulatorWindow, sim: FakeSim) -> None:
    window.scale = 0.5
    target = button(window, "key", "7").center
    window.handle_events([pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1,
                                             pos=(target[0] // 2, target[1] // 2))])
    assert sim.panel.pressed == ["7"]


def test_the_picker_lists_every_kind_the_fixture_holds(sim: FakeSim, tmp_path: Path) -> None:
    fixture = tmp_path / "cards.toml"
    fixture.write_text('[[fleet]]\nname = "F"\npan = "7077001000000019"\nexpiry = "2912"\nholder = "H"\n'
                       '[[gift]]\nname = "Gift card"\n[[loyalty]]\nname = "Loyalty card"\n'
                       '[[blank]]\nname = "Blank"\n')
    profiles = load_cards(fixture)
    assert [(p.kind, p.name) for p in profiles] == [("fleet", "F"), ("blank", "Blank"), ("gift", "Gift card"),
                                                     ("loyalty", "Loyalty card")]
    w = SimulatorWindow(sim, profiles=profiles)
    assert_layout_fits(w)
    assert [b.label for b in w.buttons if b.action == "insert"] == ["F", "Blank", "Gift card", "Loyalty card"]
    w.draw(pygame.Surface(SIZE))


def test_every_pump_gets_its_row_of_buttons(sim: FakeSim) -> None:
    for n in (2, 3, 4):
        sim.pump_line.pumps[n] = FakePump()
    w = SimulatorWindow(sim)
    assert_layout_fits(w)
    w.handle_click(button(w, "lift", (3, 2)).center)
    w.handle_click(button(w, "hang_up", 3).center)
    assert sim.pump_line.pump(3).calls == [("lift", 2), ("hang_up",)] and sim.pump_line.pump(1).calls == []
    assert w.selected_pump == 3


def test_status_strip_says_down_before_anything_started(window: SimulatorWindow) -> None:
    window.refresh()
    assert window.strip is not None
    values = {label: value for label, value, _ in window.strip.items()}
    assert values["broker"] == values["registry"] == values["acquirer"] == "DOWN"
    assert values["config"] == "none yet" and values["backlog"] == "? sales, ? advices"


def test_paper_scrolls_back_through_older_receipts(window: SimulatorWindow, sim: FakeSim) -> None:
    sim.printer.receipts += [RECEIPT.replace("33.18", f"{i}.00") for i in range(10, 16)]
    surface = pygame.Surface(SIZE)
    window.draw(surface)
    newest = pixels(surface, window.receipt_rect)
    inside = window.receipt_rect.center
    window.scroll(inside, 12)
    window.draw(surface)
    assert window.receipt_scroll == 12 and pixels(surface, window.receipt_rect) != newest
    window.handle_key(pygame.K_PAGEDOWN)
    window.handle_key(pygame.K_PAGEDOWN)
    window.draw(surface)
    assert window.receipt_scroll == 0 and pixels(surface, window.receipt_rect) == newest
    window.scroll(inside, 10_000)
    window.draw(surface)
    assert 0 < window.receipt_scroll < 10_000          # no further back than the first receipt's top


def test_log_pane_shows_the_terminal_log_masked(window: SimulatorWindow, sim: FakeSim) -> None:
    log = sim.state / "terminal.log"
    log.write_text("".join(f"2026-12-01 17:16:{i:02d},000 terminal INFO firmware.x: event {i}\n"
                           for i in range(60)) + "2026-12-01 17:17:00,000 terminal WARNING firmware.x: "
                   "card 7077001000000019 track 4761739001010143=31062010000000000000\n")
    window.refresh()
    assert window.log.lines[-1] == "17:17:00 WARNING x: card ************0019 track [track data]"
    surface = pygame.Surface(SIZE)
    window.draw(surface)
    latest = pixels(surface, window.log_rect)
    window.scroll(window.log_rect.center, 20)
    window.draw(surface)
    assert window.log_scroll == 20 and pixels(surface, window.log_rect) != latest


def test_the_picker_offers_every_emv_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from hostsim import window as window_module

    names = profile_names()
    assert {c.fields.get("profile") for c in picker_cards() if c.kind == "emv"} == set(names)
    monkeypatch.setattr(window_module, "profile_names", lambda: [*names, "new_profile"])
    extra = picker_cards()[-1]
    assert (extra.kind, extra.name, extra.fields["profile"]) == ("emv", "new_profile", "new_profile")
    assert picker_cards()[:len(load_cards())] == load_cards()      # the fixture's cards keep their order


def test_faults_and_scenarios_wait_until_the_forecourt_started(window: SimulatorWindow, sim: FakeSim) -> None:
    window.starting = True
    window.handle_click(button(window, "fault", "noise").center)
    assert window.status == "wait: the forecourt is still starting" and sim.pump_line.noise_interval is None
    window.status = ""
    window.handle_key(pygame.K_F6)
    assert window.status == "wait: the forecourt is still starting" and not window.player.busy


def test_noise_button_and_the_strip(window: SimulatorWindow, sim: FakeSim) -> None:
    window.handle_click(button(window, "fault", "noise").center)
    assert window.status == "pump line noisy" and sim.pump_line.noise_interval
    window.refresh()
    assert window.strip is not None and window.strip.line_noise
    assert ("pump line", "NOISY", False) in window.strip.items()
    window.handle_click(button(window, "fault", "noise").center)
    window.refresh()
    assert window.status == "pump line quiet" and not window.strip.line_noise


def test_run_window_offers_the_named_scenario_first(sim: FakeSim, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_draw = SimulatorWindow.draw

    def draw(self: SimulatorWindow, surface: pygame.Surface) -> None:
        seen.append(self.player.name)
        real_draw(self, surface)

    monkeypatch.setattr(SimulatorWindow, "draw", draw)
    assert run_window(sim=sim, max_frames=1, fps=1000, scenario="bank-happy") == 0
    assert seen == ["bank-happy"]
