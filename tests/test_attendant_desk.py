"""The attendant at the terminal (firmware.attendant): sign-in with the card and PIN online (the registry's
service desk on a seeded SQLite registry, reached through the real ServiceClient) and offline (the
configuration's verifier, the terminal's own lockout), then menu actions through the real sale runner and
journal (pumps, printer and cardholder scripted: tests/sale_fakes.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import func, select
from test_registry_service import NOW, PIN_KEY, Env, sqlite_env

from contracts import service_messages as sv
from contracts.errors import HostUnavailable, PrinterError
from contracts.panseal import derive_pan_key, derive_stop_key, pin_pan, seal_pan, stop_entry
from contracts.pump import PumpState
from contracts.screens import Screen
from contracts.signing import pin_verifier
from contracts.track2 import Track2
from firmware.attendant.cash import CashProgram
from firmware.attendant.desk import ITEMS, Desk
from firmware.attendant.shift import ShiftBook, close_request
from firmware.attendant.signin import CardNumber, SignInGate
from firmware.programs.base import Swipe
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset
from firmware.service_client import ServiceClient
from firmware.terminal.serve import Loop, _one_sale
from registry import attendants, prepaid
from registry.loyalty import admin, points, rewards
from registry.models import AuditEntry, Device, ShiftReport, TopupBonus
from registry.service_desk import answer
from tests.sale_fakes import CANCEL, FakeClock, FakePumps, ListPrinter, ScriptedCardholder, make_runner

CLERK = "7077007000000016"
LOYAL = "7077009000000012"
GIFT = "7077008000000014"
STRANGER = "7077001000000019"       # a fleet card of the seed: not an attendant's


class Link:
    """The MQTT request path straight into the registry's service desk (the wire encoding both ways)."""

    def __init__(self, env: Env) -> None:
        self.env, self.up = env, True
        self.asked: list[str] = []

    def request(self, topic: str, payload: bytes, response_topic: str, timeout: float) -> bytes:
        if not self.up:
            raise HostUnavailable("no answer")
        req = sv.decode_request(payload)
        self.asked.append(req["op"])
        with self.env.sessions() as s:
            doc = answer(s, self.env.keys, req, NOW)
        return sv.encode_response(doc)


class Host:
    """firmware.hostlink.HostLink's part the desk uses: T-0001 at ST-001 with its PIN key."""

    terminal, station_id, inbox, auth_timeout = "T-0001", "ST-001", "inbox/T-0001", 1.0

    def __init__(self, link: Link, entries: list[dict[str, str]]) -> None:
        self.link, self.entries = link, entries

    @property
    def online(self) -> bool:
        return self.link.up

    @property
    def config(self) -> dict[str, Any]:
        return {"attendants": self.entries}

    def stop_entry(self, number: str) -> str:
        return stop_entry(derive_stop_key(PIN_KEY), number)

    def seal_for_sale(self, number: str, sale_id: str) -> str:
        return seal_pan(derive_pan_key(PIN_KEY), number, request_id=sale_id, terminal=self.terminal,
                        station=self.station_id)


class Port(ScriptedCardholder):
    """The scripted cardholder with the attendant's menu (script "menu": item indexes)."""

    def menu(self, screen: Screen, items: Sequence[str], **fields: Any) -> int:
        self.screens.append((screen, {"items": list(items), **fields}))
        return int(self._next("menu"))

    def begin(self) -> None:
        self.asked.append("begin")

    def end(self) -> None:
        self.asked.append("end")


def _block(pin: str, number: str = CLERK) -> bytes:
    return encipher_pinblock_iso_4(PIN_KEY, pin, pin_pan(number))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    gen = sqlite_env(tmp_path)
    e = next(gen)
    with e.sessions() as s:
        attendants.add(s, "A-1", "Ann", actor="op", now=NOW)
        attendants.set_card(s, e.keys, "A-1", CLERK, actor="op", now=NOW)
        attendants.set_pin(s, "A-1", "2580", actor="op", now=NOW)
        account = admin.create_account(s, "Dana", issued_on=NOW.date(), actor="op", now=NOW)
        admin.add_card(s, e.keys, account.id, LOYAL, medium="chip", expiry="2912", actor="op", now=NOW)
        points.award(s, points.points_wallet(s, account.id), 500, key="seed:1", at=NOW, station="ST-001",
                     product_group="fuel")
        coffee = rewards.add_reward(s, "Coffee", 100, actor="op", now=NOW)
        rewards.set_stock(s, coffee.id, "ST-001", 2, actor="op", now=NOW)
        s.commit()
    yield e
    gen.close()


class Rig:
    def __init__(self, env: Env, tmp_path: Path, port: Port, *, entries: list[dict[str, str]] | None = None,
                 presented: Sequence[str] = ()) -> None:
        self.link = Link(env)
        if entries is None:
            with env.sessions() as s:
                entries = attendants.config_entries(s, env.keys, s.get(Device, "T-0001"))
        self.host = Host(self.link, entries)
        self.clock = FakeClock()
        self.pumps = FakePumps(self.clock)
        self.printer = ListPrinter()
        self.journal = Journal(tmp_path / "journal.db")
        self.port = port
        self.cash = CashProgram()
        self.runner = make_runner(self.journal, [self.cash], port, self.pumps, self.printer, self.clock)
        self.book = ShiftBook(self.journal, self.clock.time)
        self.gate = SignInGate(self.host, ServiceClient(self.host), self.journal, self.clock.time)
        cards = [CardNumber(n, "chip") for n in presented]
        self.desk = Desk(self.runner, port, self.gate, self.book, self.gate.service,
                         present=lambda: cards.pop(0) if cards else None, cash=self.cash, linger=0.0)

    def attendant_card(self) -> Swipe:
        return Swipe(Track2(CLERK, "2912", "101", ""))


def _menu(*names: str) -> list[int]:
    return [ITEMS.index(n) for n in names]


def test_an_attendant_signs_in_online_and_a_cash_prepay_settles_what_was_dispensed(env: Env,
                                                                                  tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("cash_prepay"), 0, *_menu("sign_out")], pump=[1],
                preset=[Preset.amount(2000)])
    rig = Rig(env, tmp_path, port)
    rig.pumps.customer("lift", ("flow", 500), "hang_up")
    assert rig.desk(rig.attendant_card()) is True
    assert rig.link.asked == ["attendant_signin"]
    [sale] = rig.journal.all_sales()
    assert sale.state is SaleState.COMPLETED and sale.program == "cash" and sale.data["attendant"] == "A-1"
    assert (sale.volume_cl, sale.charged_cents, sale.preset) == (500, 830, Preset.amount(2000))
    assert rig.pumps.authorized == [(1, (1, 2), None, 2000)]
    paper = "\n".join(rig.printer.texts())
    assert "Cash prepaid" in paper and "20.00 EUR" in paper and "11.70 EUR" in paper and CLERK not in paper
    acts = [a["action"] for a in rig.book.actions(1)]
    assert acts == ["sign_in", "cash_prepay", "sign_out"]
    results = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT]
    assert results[0] == {"done": "cash_prepay", "ok": True, "pump": 1}
    assert all(a["attendant"] == "A-1" for a in rig.book.actions(1))
    assert CLERK not in json.dumps(rig.book.actions(1)) and "2580" not in json.dumps(rig.book.actions(1))


def test_a_wrong_pin_online_is_refused_with_the_registrys_tries_and_opens_no_menu(env: Env,
                                                                                 tmp_path: Path) -> None:
    port = Port(pin=[_block("1111")])
    rig = Rig(env, tmp_path, port)
    assert rig.desk(rig.attendant_card()) is True
    screen, fields = port.screens[-1]
    assert screen is Screen.ATTENDANT_RESULT and fields["reason"] == "wrong_pin" and fields["tries"] == 4
    assert Screen.ATTENDANT_MENU not in port.shown()
    acts = [(a["action"], a["subject"], a["detail"]) for a in rig.book.actions(1)]
    assert acts == [("sign_in", "refused:wrong_pin", {"online": True, "tries": 4})]     # a shift action


def test_a_card_the_configuration_does_not_name_is_left_to_the_programs(env: Env, tmp_path: Path) -> None:
    rig = Rig(env, tmp_path, Port())
    assert rig.desk(Swipe(Track2(STRANGER, "2912", "101", ""))) is False
    assert rig.link.asked == [] and rig.port.asked == []


def test_offline_the_verifier_decides_and_wrong_pins_lock_the_attendant_out(env: Env, tmp_path: Path) -> None:
    entry = {"id": "A-1", "name": "Ann", "role": "attendant",
             "pin_verifier": pin_verifier("2580", salt=b"s" * 16, iterations=1000),
             "card": stop_entry(derive_stop_key(PIN_KEY), "attendant:" + CLERK)}
    wrong = bytearray.fromhex("241111FFFFFFFFFF")
    right = bytearray.fromhex("242580FFFFFFFFFF")
    port = Port(offline_pin=[right, wrong, wrong, wrong, wrong, wrong, right], menu=[*_menu("sign_out")])
    rig = Rig(env, tmp_path, port, entries=[entry])
    rig.link.up = False
    rig.desk(rig.attendant_card())                   # the right PIN: the menu, then sign-out
    assert [a["action"] for a in rig.book.actions(1)] == ["sign_in", "sign_out"]
    outcomes = []
    for _ in range(6):
        rig.desk(rig.attendant_card())
        outcomes.append((port.screens[-1][1].get("reason"), port.screens[-1][1].get("tries")))
    assert outcomes == [("wrong_pin", 4), ("wrong_pin", 3), ("wrong_pin", 2), ("wrong_pin", 1), ("locked", 0),
                        ("locked", 0)]
    assert port.pin_tries == [5, 5, 4, 3, 2, 1]      # the last try is told; a locked one asks no PIN
    assert rig.link.asked == []


def test_points_redeemed_and_movements_printed_for_a_presented_card(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], choose=[0],
                menu=[*_menu("redeem"), 0, 0, *_menu("movements", "sign_out")])     # a reward, handed over
    rig = Rig(env, tmp_path, port, presented=[LOYAL, LOYAL])
    rig.desk(rig.attendant_card())
    assert rig.link.asked == ["attendant_signin", "loyalty_lookup", "loyalty_redeem", "loyalty_lookup"]
    reward, moves = ("\n".join(line.text for line in paper) for paper in rig.printer.papers)
    assert "Coffee" in reward and "400 pts" in reward and LOYAL not in reward
    assert "+500" in moves and "-100" in moves and "400 pts" in moves
    with env.sessions() as s:
        audited = s.query(AuditEntry).filter(AuditEntry.actor == "attendant:A-1").all()
        assert [a.action for a in audited if a.action == "reward.redeem"] == ["reward.redeem"]
    assert [a["action"] for a in rig.book.actions(1)] == ["sign_in", "redeem", "movements", "sign_out"]


def test_no_card_presented_or_cancel_goes_back_to_the_menu_and_inactivity_signs_out(env: Env,
                                                                                   tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("topup"), CANCEL])
    rig = Rig(env, tmp_path, port)
    rig.desk(rig.attendant_card())
    results = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT]
    assert results == [{"done": "topup", "ok": False, "reason": "cancelled"},
                       {"done": "sign_out", "ok": True}]
    assert rig.book.actions(1)[-1]["detail"] == {"why": "inactive_or_cancel"}


def test_clear_pump_refuses_a_released_pump_and_resets_one_in_error(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580"), _block("2580")], pump=[1, 1],
                menu=[*_menu("clear_pump", "sign_out", "clear_pump", "sign_out")])
    rig = Rig(env, tmp_path, port)
    pump = rig.pumps.pumps[1]
    pump.status = replace(pump.status, state=PumpState.AUTHORIZED)
    rig.desk(rig.attendant_card())
    assert pump.status.state is PumpState.AUTHORIZED
    pump.status = replace(pump.status, state=PumpState.SWITCHED_OFF)
    rig.desk(rig.attendant_card())
    assert pump.status.state is PumpState.RESET
    results = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT and f["done"] == "clear_pump"]
    assert results == [{"done": "clear_pump", "ok": False, "reason": "pump_busy", "pump": 1},
                       {"done": "clear_pump", "ok": True, "pump": 1}]
    cleared = [a["detail"] for a in rig.book.actions(1) if a["action"] == "clear_pump"]
    assert cleared == [{"was": "switched_off"}]


def test_an_open_sale_is_settled_by_the_attendant_and_its_receipt_reprinted(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580"), _block("2580")], pump=[1, 1], preset=[Preset.amount(5000)],
                menu=[*_menu("cash_prepay"), 0, *_menu("settle_open", "sign_out"),
                      *_menu("settle_open", "reprint", "sign_out")])
    rig = Rig(env, tmp_path, port)
    rig.pumps.customer("lift", ("flow", 1000), "offline")     # the pump stops answering mid-sale
    rig.desk(rig.attendant_card())
    [sale] = rig.journal.all_sales()
    assert sale.state is SaleState.PUMP_AUTHORIZED and "attendant_check" in sale.flags
    rig.pumps.customer("online", "hang_up")                    # back: the nozzle is hung up
    rig.desk(rig.attendant_card())
    sale = rig.journal.get(sale.id)
    assert sale.state is SaleState.COMPLETED and sale.volume_cl == 1000 and sale.recovered
    settles = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT and f["done"] == "settle_open"]
    assert [f["ok"] for f in settles] == [False, True] and settles[0]["reason"] == "pump_error"
    acts = [(a["action"], a["subject"]) for a in rig.book.actions(1)]
    assert ("settle_open", f"sale:{sale.id}") in acts and ("reprint", f"sale:{sale.id}") in acts
    assert rig.printer.duplicates() == [False, True]


def test_a_z_report_closes_the_shift_keeps_it_for_the_registry_and_opens_the_next(env: Env,
                                                                                 tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], pump=[1, 1], preset=[Preset.amount(2000), Preset.volume(1500)],
                menu=[*_menu("cash_prepay"), 0, *_menu("cash_prepay"), 1, *_menu("x_report", "z_report"), 0,
                      *_menu("x_report", "sign_out")])
    rig = Rig(env, tmp_path, port)
    rig.pumps.customer("lift", ("flow", 500), "hang_up", "lift", ("flow", 2000))
    rig.desk(rig.attendant_card())
    sales = rig.journal.all_sales()
    assert [s.volume_cl for s in sales] == [500, 1500]
    reports = [f for s, f in port.screens if s is Screen.ATTENDANT_REPORTS]
    assert [(r["kind"], r["shift"], r["sales"]) for r in reports] == [("X", 1, 2), ("Z", 1, 2), ("X", 2, 0)]
    assert reports[1]["total_cents"] == sum(s.charged_cents or 0 for s in sales)
    z = rig.book.z_report(1)
    assert z is not None and z["total"]["volume_cl"] == 2000 and z["by_attendant"]["A-1"]["sales"] == 2
    assert z["by_payment"]["cash"]["charged_cents"] == z["cash_cents"] == reports[1]["total_cents"]
    assert [a["action"] for a in z["actions"]] == ["sign_in", "cash_prepay", "cash_prepay", "x_report",
                                                   "z_report"]
    assert rig.link.asked == ["attendant_signin", "shift_close"] and rig.book.unsent() == []
    with env.sessions() as s:
        [row] = s.scalars(select(ShiftReport)).all()
        assert (row.terminal, row.shift, row.attendant_id) == ("T-0001", 1, "A-1")
        kept = json.loads(row.totals)
        assert kept["total"] == z["total"] and kept["cash_cents"] == 830 + 2489
        audited = s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "attendant:A-1")
                            .order_by(AuditEntry.id)).all()
    assert [a for a in audited if a.startswith("attendant.")][-4:] == [
        "attendant.cash_prepay", "attendant.cash_prepay", "attendant.x_report", "attendant.z_report"]
    # the same report again (an answer lost on the way): stored once, audited once
    again = rig.gate.service.ask("shift_close", close_request(z))
    assert again.ok and again.result == {"stored": False}
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ShiftReport)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "attendant.z_report")) == 1
    z_paper = "\n".join(rig.printer.texts(-2))
    assert "Z REPORT - SHIFT 1" in z_paper and "Per attendant" in z_paper
    assert rig.book.current().number == 2 and rig.book.report().total.sales == 0
    assert z["closed_at"] >= z["opened_at"] and z["attendant"] == "A-1"


def test_the_terminal_loop_hands_an_attendants_card_to_the_desk_before_any_program(env: Env,
                                                                                  tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("sign_out")])
    rig = Rig(env, tmp_path, port)
    loop = Loop(runner=rig.runner, port=cast(Any, port), reader=cast(Any, None), stripes=None,
                pumps=rig.pumps, host=cast(Any, rig.host), pump_numbers=(1,), sells_offline=False,
                desk=rig.desk)
    _one_sale(loop, rig.attendant_card())
    assert [a["action"] for a in rig.book.actions(1)] == ["sign_in", "sign_out"]
    assert Screen.CARD_NOT_ACCEPTED not in port.shown()
    _one_sale(loop, Swipe(Track2(STRANGER, "2912", "101", "")))     # no program here takes it
    assert port.shown()[-1] is Screen.CARD_NOT_ACCEPTED and port.asked.count("begin") == 2


def test_a_cash_prepay_given_up_at_the_preset_releases_nothing_and_says_so(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("cash_prepay"), 1, *_menu("sign_out")], preset=[CANCEL])
    rig = Rig(env, tmp_path, port)
    rig.desk(rig.attendant_card())
    [sale] = rig.journal.all_sales()
    assert sale.volume_cl == 0 and rig.pumps.authorized == [] and rig.printer.papers == []
    results = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT]
    assert results[0] == {"done": "cash_prepay", "ok": False, "reason": "cancelled", "pump": 1}
    assert rig.book.actions(1)[1]["detail"]["state"] == "completed"


def test_a_printer_fault_leaves_the_z_report_closed_and_kept(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("z_report"), 0, *_menu("reprint", "sign_out")], pump=[1])
    rig = Rig(env, tmp_path, port)
    rig.printer.fail_with = PrinterError("paper out")
    rig.desk(rig.attendant_card())
    assert rig.printer.papers == [] and rig.book.current().number == 2 and rig.book.z_report(1) is not None
    assert [f["done"] for s, f in port.screens if s is Screen.ATTENDANT_RESULT] == ["reprint", "sign_out"]
    assert [f["kind"] for s, f in port.screens if s is Screen.ATTENDANT_REPORTS] == ["Z"]


def test_a_cash_top_up_books_it_with_its_bonus_prints_a_slip_and_counts_in_the_drawer(env: Env,
                                                                                      tmp_path: Path) -> None:
    with env.sessions() as s:
        prepaid.issue(s, env.keys, kind="gift", number=GIFT, expiry="2912", actor="op", now=NOW)
        s.add(TopupBonus(account_kind="gift", min_cents=10000, bonus_pct=10, bonus_cents=0))
        s.commit()
    port = Port(pin=[_block("2580")], topup_amount=["100", "7"], menu=[*_menu("topup", "topup", "sign_out")])
    rig = Rig(env, tmp_path, port, presented=[GIFT, LOYAL])
    rig.desk(rig.attendant_card())
    results = [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT]
    assert results[0] == {"done": "topup", "ok": True, "amount_cents": 10000, "currency": "EUR"}
    assert results[1] == {"done": "topup", "ok": False, "reason": "not_allowed"}      # a loyalty card
    slip = "\n".join(rig.printer.texts())
    assert "100.00 EUR" in slip and "10.00 EUR" in slip and "110.00 EUR" in slip and GIFT not in slip
    assert len(rig.printer.papers) == 1
    report = rig.book.report()
    assert report.topups == {"A-1": (1, 10000)} and report.cash_cents == 10000
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "attendant.topup")) == 1
