"""firmware.programs.fleet offline: with the registry away a fleet card sells within the configuration's
offline limit for its medium unless the stop-list names it; no PIN is asked; the synced SALE is an offline
one (no auth_id, flag offline) carrying the card number sealed to the sale, and no file of the terminal
holds the number in clear. The real HostLink derives the keys (its MQTT link is a fake that is down)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import messages as m
from contracts.errors import HostUnavailable
from contracts.money import volume_of
from contracts.panseal import derive_pan_key, derive_stop_key, stop_entry, unseal_pan
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.configstore import ConfigStore
from firmware.hostlink import RELEASE, HostLink, sale_payload
from firmware.programs.base import CardIn, ChipCard, Contactless
from firmware.programs.fleet import FleetProgram
from firmware.sale.machine import SaleState
from firmware.station import Station
from firmware.terminal.serve import Loop, serve
from tests.sale_fakes import DIESEL, SUPER, FakeClock, FakePumps, station
from tests.test_fleet_program import PIN_KEY, STATION, TAG, TERMINAL, UID, Pump, stripe
from tests.test_sale_machine import FLEET_PAN, FleetChip


class DownLink:
    """firmware.hostlink.Link: down (offline), or up with a registry that never answers."""

    def __init__(self, up: bool = False) -> None:
        self.connected = threading.Event()
        if up:
            self.connected.set()

    def subscribe(self, topic: str, handler: Callable[[str, bytes, Any], None], qos: int = 1) -> None:
        pass

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        raise HostUnavailable("link down")

    def request(self, topic: str, payload: bytes, response_topic: str, timeout: float) -> bytes:
        raise HostUnavailable("no answer in time")

    def on_state(self, callback: Callable[[bool], None]) -> None:
        pass


def config(limits: dict[str, tuple[int, int]], stop: frozenset[str] = frozenset()) -> Station:
    return replace(station(), stop_list=stop,
                   offline_limits=tuple(sorted((k, c, v) for k, (c, v) in limits.items())))


class Offline(Pump):
    """The terminal of test_fleet_program with the real HostLink as the fleet program's registry."""

    def __init__(self, tmp: Path, station_config: Station, **kw: Any) -> None:
        super().__init__(tmp, None, config=station_config, **kw)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.host = HostLink(DownLink(), self.journal, TERMINAL, STATION, pin_key=PIN_KEY,
                             configs=ConfigStore(self.tmp, {}, terminal=TERMINAL))
        self.host.station = self.config or station()
        self.registry = self.host
        self.program.registry = self.host


@pytest.fixture
def offline(tmp_path: Path) -> Any:
    made: list[Offline] = []

    def build(station_config: Station, **kw: Any) -> Offline:
        env = Offline(tmp_path, station_config, **kw)
        made.append(env)
        return env

    yield build
    for env in made:
        env.journal.close()


MEDIA: list[tuple[str, Callable[[], CardIn], str]] = [
    ("fleet", lambda: ChipCard(FleetChip(), b"\x3b"), FLEET_PAN),
    ("fleet_stripe", stripe, FLEET_PAN),
    ("fleet_tag", lambda: Contactless(UID), TAG),
]


@pytest.mark.parametrize(("limit_class", "card", "number"), MEDIA)
def test_an_offline_sale_is_granted_within_its_mediums_limit_without_a_pin(
        offline: Any, limit_class: str, card: Callable[[], CardIn], number: str) -> None:
    env = offline(config({limit_class: (5000, 3000)}), events=("lift", ("flow", 9000), "hang_up"))
    sale_id = env.serve(card())        # the script has no PIN: asking for one fails the test
    # 30 L, or less where 50.00 buys less: Super 95 at 1.789 buys 27.95 L (50.00), the smaller on this pump
    volume = min(3000, volume_of(5000, DIESEL), volume_of(5000, SUPER))
    assert volume == 2795 and env.pumps.authorized == [(1, (1, 2), volume, None)]
    rec = env.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == volume and rec.amount_cents <= 5000
    assert rec.reference == "offline" and "offline" in rec.flags and env.port.asked == []


@pytest.mark.parametrize(("medium", "card", "number", "masked"), [
    ("stripe", stripe, FLEET_PAN, "707700******0019"),
    ("tag", lambda: Contactless(UID), TAG, "U**********E5F6"),
])
def test_the_offline_sale_payload_carries_the_card_sealed_and_no_file_holds_the_number(
        offline: Any, tmp_path: Path, medium: str, card: Callable[[], CardIn], number: str,
        masked: str) -> None:
    env = offline(config({f"fleet_{medium}": (5000, 3000)}))
    sale_id = env.serve(card())
    doc = sale_payload(env.journal.get(sale_id), TERMINAL, STATION)
    m.encode(doc, m.SALE)       # fits the wire schema
    assert (doc["kind"], doc["auth_id"], doc["flags"]) == ("fleet", None, ["offline"])
    assert doc["medium"] == medium and doc["card_masked"] == masked and doc["volume_cl"] == 1000
    # the registry opens it with the terminal's key, bound to this sale (its id is the request id)
    assert unseal_pan(derive_pan_key(PIN_KEY), doc["card_sealed"], request_id=sale_id, terminal=TERMINAL,
                      station=STATION) == number
    env.journal.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("journal.db") for p in files)
    clear = number.removeprefix("U").encode()          # a tag's UID in hex, in either case
    for p in files:
        raw = p.read_bytes()
        assert clear not in raw and clear.lower() not in raw, p.name


def test_a_card_on_the_stop_list_is_refused_offline(offline: Any) -> None:
    entry = stop_entry(derive_stop_key(PIN_KEY), TAG)      # the registry's entry for this terminal
    env = offline(config({"fleet_tag": (5000, 3000)}, frozenset({entry})))
    events: list[tuple[str, str, str]] = []
    env.host.event_sink = lambda *event: events.append(event)     # as firmware.deviceops queues them
    assert env.serve(Contactless(UID)) is None              # refused before a sale is journaled
    assert env.port.screens[-1] == (Screen.DECLINED, {"reason": DeclineReason.CARD_BLOCKED})
    assert env.pumps.authorized == [] and env.journal.all_sales() == []
    # the registry hears of it when the terminal is back: masked, never the UID
    assert events == [("warning", "stop_list_refused", "card=U**********E5F6")]


def test_another_terminals_stop_list_entry_does_not_refuse_the_card(offline: Any) -> None:
    other = stop_entry(derive_stop_key(bytes(16)), TAG)
    env = offline(config({"fleet_tag": (5000, 3000)}, frozenset({other})))
    assert env.serve(Contactless(UID)) is not None and env.pumps.authorized != []


@pytest.mark.parametrize("limits", [{}, {"fleet": (5000, 3000)}, {"fleet_tag": (0, 3000)}])
def test_without_an_offline_limit_for_the_medium_the_registry_is_needed(
        offline: Any, limits: dict[str, tuple[int, int]]) -> None:
    env = offline(config(limits))
    assert env.serve(Contactless(UID)) is None
    assert env.port.screens[-1] == (Screen.HOST_UNAVAILABLE, {"reason": DeclineReason.HOST_UNAVAILABLE})
    assert env.pumps.authorized == []


def test_an_offline_sale_stopped_before_its_grant_is_interrupted_on_restart(offline: Any) -> None:
    env = offline(config({"fleet_tag": (5000, 3000)}), events=())
    program: FleetProgram = env.program
    sale_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    env.journal.begin_sale(sale_id, 1, "U**********E5F6", "t" * 32, program="fleet")
    env.journal.transition(sale_id, SaleState.AUTHORIZING, data={"offline": True, "card_sealed": "x"})
    decline = program.recover(env.journal.get(sale_id))
    assert getattr(decline, "reason", None) is DeclineReason.INTERRUPTED


def test_sells_offline_follows_the_configuration_in_force(offline: Any) -> None:
    env = offline(config({}))
    assert env.program.sells_offline is False
    env.host.station = config({"fleet_stripe": (100, 100)})
    assert env.program.sells_offline is True


def test_an_unanswered_tag_authorization_is_released_under_its_masked_number(tmp_path: Path) -> None:
    """HostLink queues a sale of nothing for an unanswered request; a tag's number masks as a tag's."""
    from firmware.sale.journal import Journal

    journal = Journal(tmp_path / "journal.db")
    try:
        host = HostLink(DownLink(up=True), journal, TERMINAL, STATION, pin_key=PIN_KEY,
                        configs=ConfigStore(tmp_path, {}, terminal=TERMINAL))
        with pytest.raises(HostUnavailable):
            host.authorize(pan=TAG, expiry="9912", pin_block=b"", pump=1, medium="tag")
        (doc,) = journal.values(RELEASE).values()
        release = json.loads(doc)
        m.encode(release, m.SALE)
        assert release["card_masked"] == "U**********E5F6"
    finally:
        journal.close()


def test_the_idle_screen_follows_a_configuration_that_sets_a_fleet_offline_limit() -> None:
    """firmware.terminal.serve: the loop, offline, shows the offline screen until a configuration lets
    fleet cards sell without the registry; then the idle screen of what sells offline, fleet among it."""
    host = SimpleNamespace(online=False, station=config({}), config_changed=threading.Event())
    world = SimpleNamespace(programs=[FleetProgram(host)], adjuncts=[])    # type: ignore[arg-type]
    shown: list[tuple[Screen, dict[str, Any]]] = []
    port = SimpleNamespace(show=lambda screen, **fields: shown.append((screen, fields)), idle_fields=dict,
                           idle_key=lambda timeout: False)
    looks: list[int] = []

    def idle() -> bool:          # a configuration with an offline limit arrives on the second look
        looks.append(1)
        if len(looks) == 2:
            host.station = config({"fleet_tag": (5000, 3000)})
            host.config_changed.set()
        return len(looks) == 4

    reader = SimpleNamespace(wait_for_card=lambda timeout: False, disconnect=lambda: None)
    loop = Loop(runner=SimpleNamespace(world=world), port=port, reader=reader, stripes=None,  # type: ignore[arg-type]
                pumps=FakePumps(FakeClock()), host=host, pump_numbers=(1,),  # type: ignore[arg-type]
                sells_offline=any(getattr(p, "sells_offline", False) for p in world.programs), idle=idle)
    serve(loop, threading.Event(), card_wait=0.01)
    assert [s for s, _ in shown] == [Screen.OFFLINE, Screen.IDLE_BANK_ONLY]
    assert shown[-1][1]["payments"] == ["fleet"]
