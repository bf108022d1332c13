"""firmware.programs.fleet online: which cards the fleet program claims (chip, a stripe by its IIN, a tag by
its UID), the PIN and the registry's prompts round, and how the per-nozzle allowances become the pump's
release. The real Journal and SaleRunner run the sale; the registry is a test implementation of the
program's Registry port (the real registry runs in the e2e scenarios)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from psec.pinblock import decipher_pinblock_iso_4, encipher_pinblock_iso_4

from contracts.errors import HostUnavailable
from contracts.messages import Allowance, AuthAnswer
from contracts.panseal import derive_pan_key, derive_stop_key, pin_pan, seal_pan, stop_entry
from contracts.reasons import DeclineReason
from contracts.track2 import Track2
from firmware.programs.base import CardIn, ChipCard, Contactless, Swipe
from firmware.programs.fleet import FleetCard, FleetProgram
from firmware.programs.fleet.program import REQUEST
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleTimeouts, SaleWorld
from firmware.station import Station
from tests.sale_fakes import CANCEL, FakeClock, FakePumps, ListPrinter, ScriptedCardholder, station
from tests.test_sale_machine import FLEET_PAN, FleetChip

PIN_KEY = bytes(range(16))
TERMINAL, STATION = "T-0001", "ST-1"
UID = bytes.fromhex("04A1B2C3D4E5F6")
TAG = "U04A1B2C3D4E5F6"
PIN = bytes(range(16))          # what the scripted PIN pad returns as the block
FILL = ("lift", ("flow", 1000), "hang_up")


def approved(allowed_cl: int = 4000, nozzles: tuple[int, ...] = (1, 2),
             allowances: tuple[Allowance, ...] = ()) -> AuthAnswer:
    return AuthAnswer("req", True, None, "auth", allowed_cl, nozzles, None, allowances=allowances)


def prompts(*asked: str) -> AuthAnswer:
    return AuthAnswer.declined("req", DeclineReason.PROMPTS_REQUIRED, prompts=asked)


class TestRegistry:
    """firmware.programs.fleet.program.Registry: answers in order (an exception is raised), keeps each
    request; its keys are the terminal's, derived from PIN_KEY as firmware.hostlink.HostLink derives them."""

    __test__ = False

    def __init__(self, *answers: AuthAnswer | BaseException, online: bool = True,
                 config: Station | None = None) -> None:
        self.answers, self.online = list(answers), online
        self.station = config or station()
        self.requests: list[dict[str, Any]] = []
        self.released: list[tuple[str, int, str]] = []

    def release(self, request_id: str, pump: int, card_masked: str) -> None:
        self.released.append((request_id, pump, card_masked))

    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int, request_id: str | None = None,
                  medium: str = "chip", prompts: Mapping[str, str] | None = None) -> AuthAnswer:
        self.requests.append({"pan": pan, "expiry": expiry, "pin_block": pin_block, "pump": pump,
                              "request_id": request_id, "medium": medium, "prompts": dict(prompts or {})})
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer.approved:           # like registry.service: the authorization id is the request id
            return replace(answer, request_id=str(request_id), auth_id=request_id)
        return replace(answer, request_id=str(request_id))

    def stop_entry(self, number: str) -> str:
        return stop_entry(derive_stop_key(PIN_KEY), number)

    def seal_for_sale(self, number: str, sale_id: str) -> str:
        return seal_pan(derive_pan_key(PIN_KEY), number, request_id=sale_id, terminal=TERMINAL,
                        station=STATION)


@dataclass
class Pump:
    """One terminal with one pump (diesel on nozzle 1, Super 95 on nozzle 2) and the fleet program."""
    tmp: Path
    registry: Any
    script: dict[str, list[Any]] = field(default_factory=dict)
    events: tuple[Any, ...] = FILL
    config: Station | None = None

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.pumps = FakePumps(self.clock)
        self.pumps.customer(*self.events)
        self.port = ScriptedCardholder(**self.script)
        self.journal = Journal(self.tmp / "journal.db")
        self.program = FleetProgram(self.registry)
        config = self.config or station()
        self.world = SaleWorld(terminal=TERMINAL, station_id=STATION, pump_numbers=(1,),
                               programs=[self.program], port=self.port, display=self.port, pumps=self.pumps,
                               printer=ListPrinter(),
                               journal=self.journal, station=lambda: config, token_key=b"k" * 32,
                               spawn=lambda name, work: work(), clock=self.clock,
                               timeouts=SaleTimeouts(nozzle_lift=60.0, filling=600.0, pump_offline=30.0))
        self.runner = SaleRunner(self.world)

    def serve(self, card: CardIn) -> str | None:
        return self.runner.serve(card)


@pytest.fixture
def make(tmp_path: Path) -> Any:
    made: list[Pump] = []

    def build(registry: Any, **kw: Any) -> Pump:
        env = Pump(tmp_path, registry, **kw)
        made.append(env)
        return env

    yield build
    for env in made:
        env.journal.close()


def stripe(pan: str = FLEET_PAN, expiry: str = "2912") -> Swipe:
    return Swipe(Track2(pan, expiry, "101", ""))


# -- claim -------------------------------------------------------------------------------------------------
def test_a_swipe_is_a_fleet_card_only_when_its_number_has_a_fleet_iin() -> None:
    program = FleetProgram(TestRegistry())
    claim = program.claim(stripe())
    assert getattr(claim, "card", None) == FleetCard(FLEET_PAN, "stripe", "2912")
    assert program.claim(stripe("4761739001010010")) is None       # a bank card: the bank program's
    assert FleetProgram(TestRegistry(), iins=("4761",)).claim(stripe("4761739001010010")) is not None


def test_a_tag_is_claimed_by_its_uid_and_a_chip_by_its_fleet_record() -> None:
    program = FleetProgram(TestRegistry())
    tag = program.claim(Contactless(UID))
    assert getattr(tag, "card", None) == FleetCard(TAG, "tag", None)
    assert program.claim(Contactless(b"\x01\x02\x03")) is None        # no ISO/IEC 14443-3 UID length
    chip = program.claim(ChipCard(FleetChip(), b"\x3b"))
    assert getattr(chip, "card", None) == FleetCard(FLEET_PAN, "chip", "2912")
    assert "0019" in repr(getattr(chip, "card", None)) and FLEET_PAN not in repr(getattr(chip, "card", None))


# -- online: PIN, medium, expiry --------------------------------------------------------------------------
def test_a_stripe_sale_asks_the_pin_and_sends_its_medium_and_track_expiry(make: Any) -> None:
    env = make(TestRegistry(approved()), script={"pin": [PIN]})
    sale_id = env.serve(stripe())
    rec = env.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 1000
    (req,) = env.registry.requests
    assert (req["medium"], req["expiry"], req["pin_block"], req["pan"]) == ("stripe", "2912", PIN, FLEET_PAN)
    assert rec.data["medium"] == "stripe" and rec.card_masked == "707700******0019"


def test_an_expired_stripe_is_declined_without_asking_the_registry(make: Any) -> None:
    env = make(TestRegistry())
    env.serve(stripe(expiry="2001"))
    assert env.registry.requests == [] and env.port.screens[-1][1]["reason"] is DeclineReason.CARD_EXPIRED


def test_a_tag_asks_nothing_first_and_is_journaled_masked(make: Any) -> None:
    env = make(TestRegistry(approved()))          # the script has no PIN: asking for one fails the test
    sale_id = env.serve(Contactless(UID))
    (req,) = env.registry.requests
    assert (req["pan"], req["medium"], req["pin_block"], req["expiry"]) == (TAG, "tag", b"", "9912")
    rec = env.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.card_masked == "U**********E5F6"


# -- the prompts round ---------------------------------------------------------------------------------------
def test_prompts_are_asked_and_sent_once_more_under_a_new_request_id(make: Any) -> None:
    env = make(TestRegistry(prompts("pin", "odometer", "vehicle"), approved()),
               script={"pin": [PIN], "odometer": ["123456"], "vehicle": ["4711"]})
    sale_id = env.serve(Contactless(UID))
    first, second = env.registry.requests
    assert first["pin_block"] == b"" and first["prompts"] == {}
    assert second["pin_block"] == PIN and second["prompts"] == {"odometer": "123456", "vehicle": "4711"}
    assert first["request_id"] != second["request_id"]
    rec = env.journal.get(sale_id)
    # the second request id was journaled before it was asked; the sale settles against it
    assert rec.data[REQUEST] == second["request_id"] == rec.reference
    authorizing = [d for s, d in env.journal.events(sale_id) if s == "authorizing"]
    journaled = [json.loads(d["data"])[REQUEST] for d in authorizing]
    assert journaled == [first["request_id"], second["request_id"]]
    assert env.port.asked == ["pin", "odometer", "vehicle"]


def test_a_tags_pin_block_binds_to_the_pan_its_uid_gives() -> None:
    """A tag has no PAN; ISO 9564-1 format 4 needs digits: contracts.panseal.pin_pan, as the registry."""
    card = FleetCard(TAG, "tag", None)
    assert card.pin_account == pin_pan(TAG) and card.pin_account.isdigit()
    block = encipher_pinblock_iso_4(PIN_KEY, "1234", card.pin_account)
    assert decipher_pinblock_iso_4(PIN_KEY, block, pin_pan(TAG)) == "1234"
    assert FleetCard(FLEET_PAN, "chip", "2912").pin_account == FLEET_PAN


def test_a_pin_already_given_is_sent_again_not_asked_again(make: Any) -> None:
    env = make(TestRegistry(prompts("pin", "driver_id"), approved()),
               script={"pin": [PIN], "driver_id": ["42"]})
    env.serve(ChipCard(FleetChip(), b"\x3b"))
    first, second = env.registry.requests
    assert first["pin_block"] == second["pin_block"] == PIN and second["prompts"] == {"driver_id": "42"}
    assert env.port.asked.count("pin") == 1


def test_a_second_prompts_answer_is_a_decline(make: Any) -> None:
    env = make(TestRegistry(prompts("odometer"), prompts("odometer")), script={"odometer": ["1"]})
    sale_id = env.serve(Contactless(UID))
    rec = env.journal.get(sale_id)
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.DO_NOT_HONOUR)
    assert len(env.registry.requests) == 2 and env.pumps.authorized == []


def test_a_registry_lost_during_the_prompts_round_declines_host_unavailable(make: Any) -> None:
    env = make(TestRegistry(prompts("vehicle"), HostUnavailable("gone")), script={"vehicle": ["7"]})
    rec = env.journal.get(env.serve(Contactless(UID)))
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.HOST_UNAVAILABLE)


# -- allowances ----------------------------------------------------------------------------------------------
DIESEL_40 = Allowance(1, "diesel", 4000, 6636)
SUPER_25 = Allowance(2, "petrol95", 2500, 4473)


def test_differing_allowances_let_the_driver_pick_the_product_and_preset_its_allowance(make: Any) -> None:
    env = make(TestRegistry(approved(allowances=(DIESEL_40, SUPER_25))),
               script={"pin": [PIN], "product": [1]},
               events=(("lift", 2), ("flow", 3000), "hang_up"))
    sale_id = env.serve(ChipCard(FleetChip(), b"\x3b"))
    assert env.port.products_offered[0] == [("Diesel", 1659), ("Super 95", 1789)]
    assert env.pumps.authorized == [(1, (2,), 2500, None)]          # only Super 95, its 25 L
    rec = env.journal.get(sale_id)
    assert rec.preset == Preset.volume(2500) and rec.volume_cl == 2500 and rec.product == "petrol95"


def test_a_driver_who_cancels_the_product_choice_releases_the_hold_at_once(make: Any) -> None:
    registry = TestRegistry(approved(allowances=(DIESEL_40, SUPER_25)))
    env = make(registry, script={"pin": [PIN], "product": [CANCEL]}, events=())
    rec = env.journal.get(env.serve(ChipCard(FleetChip(), b"\x3b")))
    assert env.pumps.authorized == [] and not rec.volume_cl
    request_id = registry.requests[0]["request_id"]
    assert registry.released == [(request_id, 1, "707700******0019")]


def test_a_driver_who_takes_any_product_is_not_asked_the_product_again(make: Any) -> None:
    env = make(TestRegistry(approved(allowances=(DIESEL_40, SUPER_25))),
               script={"pin": [PIN], "product": [None]}, events=(("lift", 1), ("flow", 1000), "hang_up"))
    env.serve(ChipCard(FleetChip(), b"\x3b"))
    assert len(env.port.products_offered) == 1                   # asked once, by the fleet grant
    assert env.pumps.authorized == [(1, (1, 2), 2500, None)]      # both, preset to the smaller allowance


def test_lifting_a_nozzle_not_offered_gives_nothing(make: Any) -> None:
    env = make(TestRegistry(approved(allowances=(DIESEL_40, SUPER_25))),
               script={"pin": [PIN], "product": [0]},
               events=(("lift", 2), "hang_up"))
    rec = env.journal.get(env.serve(ChipCard(FleetChip(), b"\x3b")))
    assert env.pumps.authorized == [(1, (1,), 4000, None)] and not rec.volume_cl


def test_the_same_allowance_everywhere_offers_every_allowed_nozzle(make: Any) -> None:
    same = (DIESEL_40, replace(SUPER_25, volume_cl=4000))
    env = make(TestRegistry(approved(allowances=same)), script={"pin": [PIN]})
    env.serve(ChipCard(FleetChip(), b"\x3b"))
    assert env.pumps.authorized == [(1, (1, 2), 4000, None)]


def test_only_the_nozzles_with_an_allowance_are_offered(make: Any) -> None:
    env = make(TestRegistry(approved(allowed_cl=4000, nozzles=(1,), allowances=(DIESEL_40,))),
               script={"pin": [PIN]})
    env.serve(ChipCard(FleetChip(), b"\x3b"))
    assert env.pumps.authorized == [(1, (1,), 4000, None)] and env.port.products_offered == []


def test_an_answer_without_allowances_grants_as_before(make: Any) -> None:
    env = make(TestRegistry(approved(allowed_cl=3000, nozzles=(1, 2))), script={"pin": [PIN]})
    env.serve(ChipCard(FleetChip(), b"\x3b"))
    assert env.pumps.authorized == [(1, (1, 2), 3000, None)]


def test_allowances_all_empty_decline_limit_exhausted(make: Any) -> None:
    empty = (replace(DIESEL_40, volume_cl=0, amount_cents=0),)
    env = make(TestRegistry(approved(allowed_cl=0, nozzles=(1,), allowances=empty)), script={"pin": [PIN]})
    rec = env.journal.get(env.serve(ChipCard(FleetChip(), b"\x3b")))
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.LIMIT_EXHAUSTED)
