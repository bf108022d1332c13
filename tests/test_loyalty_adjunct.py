"""firmware.programs.loyalty: a loyalty card shown before paying rides along the payment; its number is in
the journal only sealed to the sale; the receipt's points are what the registry books. The real sale
machine and journal run the sale; the registry's real service desk answers the lookup over a test double
of the MQTT link only (the request and answer go through their wire schemas), and the real registry
stores the synced SALE and books the points."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_registry_service import NOW, PIN_KEY, Env, sqlite_env

from contracts import loyalty
from contracts import messages as m
from contracts import service_messages as sv
from contracts.cards import luhn_ok
from contracts.errors import HostUnavailable
from contracts.panseal import derive_pan_key, seal_pan
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.hostlink import sale_payload
from firmware.programs.base import ChipCard, Contactless, Swipe
from firmware.programs.fleet import FleetProgram
from firmware.programs.loyalty import LoyaltyAdjunct, loyalty_card
from firmware.programs.loyalty.setup import configured_programme, configured_timezone
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.service_client import ServiceClient
from registry.loyalty import admin, points
from registry.loyalty.earnsale import config_settings
from registry.models import Movement
from registry.service import record_sale
from registry.service_desk import answer
from tests.sale_fakes import FakeClock, FakePumps, ListPrinter, ScriptedCardholder, make_runner
from tests.test_house_card import GRANT_CL, HouseCard, house_card_in
from tests.test_sale_machine import FLEET_PAN, FleetChip

LOYAL = "7077010000000010"          # IIN 707701: the test loyalty cards
STRANGER = "7077010000000028"       # a loyalty IIN the registry has no card for
TERMINAL, STATION = "T-0001", "ST-001"
assert luhn_ok(LOYAL) and luhn_ok(STRANGER)


class DeskLink:
    """The MQTT link's request/response as firmware.service_client uses it, answered by the registry's
    service desk at once (the registry's server does the same on the broker), on the registry's clock."""

    def __init__(self, env: Env, now: Callable[[], dt.datetime] = lambda: NOW) -> None:
        self.env, self.requests, self.now = env, 0, now
        self.connected = True
        self.seen: list[dict[str, Any]] = []       # the requests as the registry read them
        self.lose = 0                              # answers to lose on the way back (the registry acted)

    def request(self, topic: str, payload: bytes, inbox: str, timeout: float) -> bytes:
        if not self.connected:
            raise HostUnavailable("no answer")
        self.requests += 1
        req = sv.decode_request(payload)
        self.seen.append(req)
        with self.env.sessions() as s:
            got = sv.encode_response(answer(s, self.env.keys, req, self.now()))
        if self.lose:
            self.lose -= 1
            raise HostUnavailable("answer lost")
        return got


class Host:
    """What the adjunct and the service client take of firmware.hostlink.HostLink, with T-0001's key."""

    terminal, station_id, inbox, auth_timeout = TERMINAL, STATION, "inbox/T-0001", 1.0

    def __init__(self, link: DeskLink) -> None:
        self.link = link
        self.body: dict[str, Any] | None = None       # the signed configuration's body

    @property
    def online(self) -> bool:
        return self.link.connected

    def seal_for_sale(self, number: str, sale_id: str) -> str:
        return seal_pan(derive_pan_key(PIN_KEY), number, request_id=sale_id, terminal=TERMINAL,
                        station=STATION)


class Chip:
    """A chip with the network's card record (firmware.programs.fleet.card) carrying `number`."""

    def __init__(self, number: str) -> None:
        self.chip = FleetChip()
        self.number = number

    def transmit(self, apdu: bytes) -> bytes:
        got = self.chip.transmit(apdu)
        return got.replace(bytes.fromhex(FLEET_PAN), bytes.fromhex(self.number))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


@pytest.fixture
def member(env: Env) -> int:
    """A loyalty account with LOYAL, 500 points, 2.5 points per litre of diesel and double on diesel."""
    with env.sessions() as s:
        account = admin.create_account(s, "Dana", issued_on=NOW.date(), actor="op", now=NOW)
        admin.add_card(s, env.keys, account.id, LOYAL, medium="chip", expiry="2912", actor="op", now=NOW)
        points.award(s, points.points_wallet(s, account.id), 500, key="seed:1", at=NOW, station=STATION,
                     product_group="fuel")
        admin.add_rule(s, "diesel", "volume", 2500, actor="op", now=NOW)
        admin.add_promotion(s, "Diesel x2", position=1, product="diesel", multiplier_pct=200,
                            starts_on=dt.date(2025, 1, 1), ends_on=dt.date(2025, 12, 31), actor="op", now=NOW)
        s.commit()
        return account.id


class Terminal:
    """One pump, the house card paying, the loyalty adjunct riding along; the journal is real."""

    def __init__(self, tmp: Path, env: Env) -> None:
        self.clock = FakeClock()
        self.link = DeskLink(env, self.utc)
        self.host = Host(self.link)
        with env.sessions() as s:
            settings = config_settings(s, STATION, NOW.date())
        self.host.body = {"programs": [{"name": "loyalty", "enabled": 1, "settings": settings}]}
        self.adjunct = LoyaltyAdjunct(self.host, ServiceClient(self.host).ask, station=STATION,
                                      programme=lambda: configured_programme(self.host.body))
        self.pumps = FakePumps(self.clock)
        self.port = ScriptedCardholder(vehicle=["4711", "4712"])
        self.printer = ListPrinter()
        self.journal = Journal(tmp / "journal.db")
        self.runner = make_runner(self.journal, [HouseCard()], self.port, self.pumps, self.printer,
                                  self.clock, adjuncts=[self.adjunct])

    def utc(self) -> dt.datetime:
        """The terminal's clock as the registry's (naive UTC): the lookup and the sale on one day."""
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC).replace(tzinfo=None)

    def sale(self, loyalty: Any) -> str:
        self.pumps.customer("lift", ("flow", 1500), "hang_up")
        assert self.runner.serve(loyalty) is None           # the loyalty card: read, waits for a payment
        sale_id = self.runner.serve(house_card_in())
        assert sale_id is not None
        return sale_id


@pytest.fixture
def terminal(tmp_path: Path, env: Env, member: int) -> Iterator[Terminal]:
    t = Terminal(tmp_path, env)
    yield t
    t.journal.close()


def chip(number: str = LOYAL) -> ChipCard:
    return ChipCard(Chip(number), b"")


def receipt_text(t: Terminal) -> str:
    return "\n".join(t.printer.texts())


# -- which cards ------------------------------------------------------------------------------------------
def test_a_loyalty_card_is_a_chip_or_stripe_with_a_loyalty_iin() -> None:
    iins = ("707701",)
    assert repr(loyalty_card(chip(), iins)) == "LoyaltyCard(number=707701******0010, medium=chip)"
    assert loyalty_card(Swipe(Track2(LOYAL, "2912", "101", "")), iins).medium == "stripe"  # type: ignore[union-attr]
    assert loyalty_card(ChipCard(FleetChip(), b""), iins) is None               # a fleet card: its IIN
    assert loyalty_card(Swipe(Track2(FLEET_PAN, "2912", "101", "")), iins) is None
    assert loyalty_card(house_card_in(), iins) is None                          # no card record
    tag = loyalty_card(Contactless(bytes.fromhex("04A1B2C3D4E5F6")), iins)     # a candidate: the registry
    assert tag is not None and (tag.number, tag.medium) == ("U04A1B2C3D4E5F6", "tag")   # decides
    assert loyalty_card(Contactless(b"\x01\x02"), iins) is None


# -- online -----------------------------------------------------------------------------------------------
def test_the_card_read_shows_its_balance_and_the_journal_holds_it_only_sealed(
        terminal: Terminal, env: Env, tmp_path: Path) -> None:
    sale_id = terminal.sale(chip())
    read = [f for s, f in terminal.port.screens if s is Screen.CARD_READ]
    assert read == [{"card": "loyalty", "points": 500}]
    rec = terminal.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == GRANT_CL
    doc = rec.adjuncts["loyalty"]
    assert doc["looked_up"] is True and doc["masked"] == "707701******0010" and "number" not in doc
    assert LOYAL not in str(rec) and LOYAL.encode() not in (tmp_path / "journal.db").read_bytes()
    # the receipt: 10 L x 2.5 x 2 = 50 points, the balance 500 + 50
    text = receipt_text(terminal)
    assert "Loyalty card" in text and "707701******0010" in text
    lines = {line.split("  ")[0]: line.split()[-1] for line in terminal.printer.texts()}
    assert lines["Points earned"] == "50" and lines["Points balance"] == "550"
    assert rec.charged_cents == rec.amount_cents                     # points are no discount
    thanks = [f for s, f in terminal.port.screens if s is Screen.THANK_YOU]
    assert thanks[-1]["points"] == 50


def test_the_registry_books_what_the_receipt_printed_from_the_sealed_sale(
        terminal: Terminal, env: Env, member: int) -> None:
    sale_id = terminal.sale(chip())
    payload = sale_payload(terminal.journal.get(sale_id), TERMINAL, STATION)
    assert payload["loyalty_medium"] == "chip" and LOYAL not in str(payload)
    doc = m.decode(m.encode(payload, m.SALE), m.SALE)
    synced = terminal.utc()
    with env.sessions() as s:
        assert record_sale(s, doc, synced, env.keys)["status"] == "stored"
        s.commit()
    with env.sessions() as s:
        wallet = points.points_wallet(s, member)
        earned = s.scalar(select(Movement.amount).where(Movement.key == f"earn:{sale_id}"))
        assert (earned, wallet.balance) == (50, 550)
    with env.sessions() as s:              # the same sale again (a resend) books nothing more
        record_sale(s, doc, synced, env.keys)
        s.commit()
        assert points.points_wallet(s, member).balance == 550


def test_an_unknown_loyalty_card_is_not_taken(terminal: Terminal) -> None:
    assert terminal.runner.serve(chip(STRANGER)) is None
    assert terminal.port.screens[-1][0] is Screen.CARD_NOT_ACCEPTED
    assert terminal.link.requests == 1


# -- offline and without a programme ------------------------------------------------------------------
def test_offline_the_card_rides_along_and_the_receipt_says_about(terminal: Terminal) -> None:
    terminal.link.connected = False
    sale_id = terminal.sale(chip())
    assert [f for s, f in terminal.port.screens if s is Screen.CARD_READ] == [{"card": "loyalty"}]
    assert terminal.link.requests == 0
    rec = terminal.journal.get(sale_id)
    assert rec.adjuncts["loyalty"]["looked_up"] is False
    assert "loyalty_sealed" in sale_payload(rec, TERMINAL, STATION)
    text = receipt_text(terminal)
    assert "Points earned (about)" in text and "50" in text and "Balance on your next receipt" in text
    assert "Points balance" not in text


def test_a_lookup_without_answer_still_rides_along(terminal: Terminal) -> None:
    def lost(*args: Any, **kw: Any) -> bytes:
        raise HostUnavailable("no answer in time")

    terminal.link.request = lost          # type: ignore[method-assign]
    sale_id = terminal.sale(chip())
    assert terminal.journal.get(sale_id).adjuncts["loyalty"]["looked_up"] is False


def test_without_a_programme_the_receipt_leaves_the_points_to_the_registry(terminal: Terminal) -> None:
    terminal.host.body = {"programs": []}
    terminal.sale(Swipe(Track2(LOYAL, "2912", "101", "")))
    text = receipt_text(terminal)
    assert "Points booked by the network" in text and "Points earned" not in text
    assert "points" not in [f for s, f in terminal.port.screens if s is Screen.THANK_YOU][-1]


def test_the_configured_programme_is_read_or_left_out() -> None:
    assert configured_programme(None) is None
    assert configured_programme({"programs": [{"name": "loyalty", "enabled": 0, "settings": {}}]}) is None
    bad = {"programs": [{"name": "loyalty", "enabled": 1, "settings": {"rule_0": "x"}}]}
    assert configured_programme(bad) is None
    settings = {"first_use_days": 30, "first_use_pct": 300, "rule_0": "*|volume|1000||"}
    good = {"programs": [{"name": "loyalty", "enabled": 1, "settings": settings}]}
    got = configured_programme(good)
    assert got is not None and got.rules[0].milli_points == 1000


def test_a_sale_without_the_loyalty_card_carries_nothing_of_it(terminal: Terminal) -> None:
    terminal.pumps.customer("lift", ("flow", 1500), "hang_up")
    sale_id = terminal.runner.serve(house_card_in())
    assert sale_id is not None
    rec = terminal.journal.get(sale_id)
    assert rec.adjuncts == {} and "loyalty_sealed" not in sale_payload(rec, TERMINAL, STATION)
    assert "Loyalty" not in receipt_text(terminal)


def test_a_pooled_card_shows_no_balance(terminal: Terminal, env: Env, member: int) -> None:
    with env.sessions() as s:
        pool = admin.create_account(s, "Fleet pool", issued_on=NOW.date(), actor="op", now=NOW)
        admin.set_pool(s, member, pool.id, actor="op", now=NOW)
        s.commit()
    terminal.sale(chip())
    assert [f for s, f in terminal.port.screens if s is Screen.CARD_READ] == [{"card": "loyalty"}]
    text = receipt_text(terminal)
    assert "Points go to your account's pool" in text and "Points balance" not in text


def test_a_fleet_card_pays_after_the_loyalty_card_in_one_sale(tmp_path: Path, env: Env, member: int) -> None:
    from tests.test_fleet_program import PIN, TestRegistry, approved

    t = Terminal(tmp_path, env)
    try:
        fleet = FleetProgram(TestRegistry(approved()))
        t.port = ScriptedCardholder(pin=[PIN])
        t.runner = make_runner(t.journal, [fleet], t.port, t.pumps, t.printer, t.clock, adjuncts=[t.adjunct])
        t.pumps.customer("lift", ("flow", 1000), "hang_up")
        assert t.runner.serve(Swipe(Track2(LOYAL, "2912", "101", ""))) is None
        sale_id = t.runner.serve(Swipe(Track2(FLEET_PAN, "2912", "101", "")))
        assert sale_id is not None
        rec = t.journal.get(sale_id)
        assert rec.program == "fleet" and rec.card_masked == "707700******0019"
        payload = sale_payload(rec, TERMINAL, STATION)
        assert payload["loyalty_medium"] == "stripe" and "loyalty_sealed" in payload
        assert any(line.startswith("Points earned") for line in t.printer.texts())
    finally:
        t.journal.close()


def book(t: Terminal, env: Env, sale_id: str) -> int:
    """The SALE stored by the registry as the terminal syncs it: the points it booked for the sale."""
    doc = m.decode(m.encode(sale_payload(t.journal.get(sale_id), TERMINAL, STATION), m.SALE), m.SALE)
    with env.sessions() as s:
        assert record_sale(s, doc, t.utc(), env.keys)["reason"] == ""
        s.commit()
        earned = s.scalar(select(Movement.amount).where(Movement.key == f"earn:{sale_id}"))
        return int(earned or 0)


def test_the_first_use_bonus_is_on_the_receipt_as_the_registry_books_it(tmp_path: Path, env: Env,
                                                                        member: int) -> None:
    t = Terminal(tmp_path, env)
    try:
        with env.sessions() as s:         # a new card, issued on the sale's day and never used
            fresh = admin.create_account(s, "Eve", issued_on=t.utc().date(), actor="op", now=NOW)
            admin.add_card(s, env.keys, fresh.id, STRANGER, medium="chip", expiry="2912", actor="op", now=NOW)
            s.commit()
        sale_id = t.sale(chip(STRANGER))
        assert t.journal.get(sale_id).adjuncts["loyalty"]["first_use"] is True
        printed = {line.split("  ")[0]: line.split()[-1] for line in t.printer.texts()}
        assert printed["Points earned"] == "150" and printed["Points balance"] == "150"   # 50 x 300 %
        assert book(t, env, sale_id) == 150
        second = t.sale(chip(STRANGER))                              # booked once: no bonus again
        assert t.journal.get(second).adjuncts["loyalty"]["first_use"] is False
    finally:
        t.journal.close()


TAG_UID = bytes.fromhex("04A1B2C3D4E5F6")


def test_a_loyalty_tag_is_taken_when_the_registry_knows_it(terminal: Terminal, env: Env, member: int) -> None:
    with env.sessions() as s:
        admin.add_card(s, env.keys, member, "U04A1B2C3D4E5F6", medium="tag", expiry="2912", actor="op",
                       now=NOW)
        s.commit()
    sale_id = terminal.sale(Contactless(TAG_UID))
    rec = terminal.journal.get(sale_id)
    doc = rec.adjuncts["loyalty"]
    assert (doc["medium"], doc["masked"]) == ("tag", "U**********E5F6")
    assert sale_payload(rec, TERMINAL, STATION)["loyalty_medium"] == "tag"
    assert book(terminal, env, sale_id) == 50


def test_a_payment_tag_is_left_to_pay_even_when_linked(terminal: Terminal, env: Env, member: int) -> None:
    linked = bytes.fromhex("04112233445566")
    with env.sessions() as s:
        admin.link_card(s, env.keys, member, "U04112233445566", medium="tag", actor="op", now=NOW)
        s.commit()
    for uid in (linked, bytes.fromhex("04998877665544")):           # linked; unknown to loyalty
        assert terminal.runner.serve(Contactless(uid)) is None
        assert terminal.port.screens[-1][0] is Screen.CARD_NOT_ACCEPTED    # no program here takes tags
    assert terminal.link.requests == 2
    terminal.link.connected = False                                  # offline a tag is never asked about
    assert terminal.runner.serve(Contactless(linked)) is None and terminal.link.requests == 2
    assert not [f for s, f in terminal.port.screens if s is Screen.CARD_READ]


def test_the_receipts_sale_date_is_the_stations_in_the_configured_time_zone(terminal: Terminal) -> None:
    sale_id = terminal.sale(chip())
    rec = terminal.journal.get(sale_id)
    at = rec.finished_at or rec.created_at
    east = dt.datetime.fromtimestamp(at, dt.timezone(dt.timedelta(hours=14))).date()   # Pacific/Kiritimati
    # a promotion on the date of a station 14 hours east of UTC only: 26 hours from one 12 hours west
    programme = loyalty.Programme(rules=(loyalty.EarnRule("*", "volume", 1000),), promotions=(
        loyalty.Promotion("East", 1, starts_on=east, ends_on=east, multiplier_pct=300),))

    def adjunct(zone: str | None) -> LoyaltyAdjunct:
        return LoyaltyAdjunct(terminal.host, ServiceClient(terminal.host).ask, station=STATION,
                              programme=lambda: programme, timezone=lambda: zone)

    doc = {"looked_up": True, "tier": "base", "balance": 0}
    litres = (rec.volume_cl or 0) // 100
    assert litres and adjunct("Pacific/Kiritimati").earned(doc, rec) == 3 * litres     # a point a litre, x3
    assert adjunct("Etc/GMT+12").earned(doc, rec) == litres
    terminal_own = dt.datetime.fromtimestamp(at).astimezone()
    assert adjunct(None).sale_time(at) == terminal_own == adjunct("No/Such_Zone").sale_time(at)
    assert configured_timezone({"timezone": "Europe/Berlin"}) == "Europe/Berlin"
    assert configured_timezone({}) is None and configured_timezone(None) is None


def test_a_products_group_comes_from_the_configuration() -> None:
    from firmware.programs.loyalty.setup import configured_group

    body = {"product_groups": {"adblue": "adblue", "diesel": "fuel"}}
    assert [configured_group(body, p) for p in ("adblue", "diesel", "coffee")] == ["adblue", "fuel", "fuel"]
    assert configured_group(None, "adblue") == "fuel"


def test_a_sale_paid_by_a_voucher_prints_no_points(terminal: Terminal) -> None:
    import dataclasses

    rec = terminal.journal.get(terminal.sale(chip()))
    programme = loyalty.Programme(rules=(loyalty.EarnRule("*", "volume", 1000),))
    adjunct = LoyaltyAdjunct(terminal.host, ServiceClient(terminal.host).ask, station=STATION,
                             programme=lambda: programme)
    doc = {"looked_up": True, "tier": "base", "balance": 7}
    assert adjunct.earned(doc, rec) == (rec.volume_cl or 0) // 100 > 0
    assert adjunct.earned(doc, dataclasses.replace(rec, program="voucher")) == 0     # as the registry books
