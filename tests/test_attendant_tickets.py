"""The attendant desk after review (firmware.attendant): the online sign-in's ticket on every booking
request, booking requests asked again under their journaled id when an answer is lost, the terminal's
lockout counter following the registry's, refused sign-ins as shift actions, riders dropped, the shift
closed in one journal transaction, a Z report refused for good set aside, rewards beyond nine keys, a
pooled card, points converted to credit. The registry's real service desk answers (a seeded SQLite
registry, tests/test_attendant_desk.py's rig)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from test_attendant_desk import CLERK, GIFT, LOYAL, Port, Rig, _block, _menu, env
from test_registry_service import NOW, PIN_KEY, Env

from contracts import service_messages as sv
from contracts.errors import HostUnavailable, JournalError
from contracts.panseal import derive_stop_key, stop_entry
from contracts.screens import Screen
from contracts.signing import pin_matches, pin_verifier
from firmware.attendant.desk import PENDING
from firmware.attendant.points import PAGE, page_labels
from firmware.attendant.shift import MOST_ACTIONS, close_request
from registry import attendants, prepaid
from registry.loyalty import admin, convert, rewards
from registry.loyalty_models import LoyaltyMember
from registry.models import AuditEntry, Movement, ShiftReport, Wallet
from registry.service_desk import answer
from ui.catalog import text

__all__ = ["env"]          # the seeded registry fixture (tests/test_attendant_desk.py)

LANGS = ("en", "de", "fr", "ru", "uk", "es", "fa")


class Losing(Rig):
    """The rig whose link loses the registry's answer to the named operations once (the registry acted)
    and keeps every request as the registry read it."""

    def __init__(self, *args: Any, lose: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lose = list(lose)
        self.seen: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        link = self.link

        def request(topic: str, payload: bytes, response_topic: str, timeout: float) -> bytes:
            if not link.up:
                raise HostUnavailable("no answer")
            req = sv.decode_request(payload)
            self.seen.append(req)
            link.asked.append(req["op"])
            with link.env.sessions() as s:
                doc = answer(s, link.env.keys, req, NOW)
            self.answers.append(doc)
            if req["op"] in self.lose:
                self.lose.remove(req["op"])
                raise HostUnavailable("answer lost")
            return sv.encode_response(doc)

        link.request = request       # type: ignore[method-assign]


def _results(port: Port) -> list[dict[str, Any]]:
    return [f for s, f in port.screens if s is Screen.ATTENDANT_RESULT]


def _gift(env: Env) -> int:
    with env.sessions() as s:
        card = prepaid.issue(s, env.keys, kind="gift", number=GIFT, expiry="2912", actor="op", now=NOW)
        convert.set_table(s, [(100, 1000)], actor="op", now=NOW)         # a cent a point from 100 points
        s.commit()
        return int(card.wallet_ids[0])


def _balance(env: Env, wallet: int) -> int:
    with env.sessions() as s:
        row = s.get(Wallet, wallet)
        assert row is not None
        assert row.balance == s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                                       .where(Movement.wallet_id == wallet))
        return int(row.balance)


# -- 1. booking requests under their journaled id --------------------------------------------------------
def test_a_top_up_whose_answer_is_lost_is_asked_again_under_its_id_and_booked_once(env: Env,
                                                                                  tmp_path: Path) -> None:
    wallet = _gift(env)
    port = Port(pin=[_block("2580")], topup_amount=["50"], menu=[*_menu("topup", "sign_out")])
    rig = Losing(env, tmp_path, port, presented=[GIFT], lose=["topup"])
    rig.desk(rig.attendant_card())
    ups = [r for r in rig.seen if r["op"] == "topup"]
    assert len(ups) == 2 and ups[0]["request_id"] == ups[1]["request_id"]
    assert _balance(env, wallet) == 5000                         # booked once
    assert _results(port)[0] == {"done": "topup", "ok": True, "amount_cents": 5000, "currency": "EUR"}
    assert rig.journal.values(PENDING) == {}                     # answered: no longer pending
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "attendant.topup")) == 1


def test_a_booking_never_answered_stays_journaled_by_its_id(env: Env, tmp_path: Path) -> None:
    _gift(env)
    port = Port(pin=[_block("2580")], topup_amount=["50"], menu=[*_menu("topup", "sign_out")])
    rig = Losing(env, tmp_path, port, presented=[GIFT], lose=["topup", "topup"])
    rig.desk(rig.attendant_card())
    ups = [r for r in rig.seen if r["op"] == "topup"]
    assert _results(port)[0] == {"done": "topup", "ok": False, "reason": "host_unavailable"}
    [(key, raw)] = rig.journal.values(PENDING).items()
    assert key == PENDING + ups[0]["request_id"] == PENDING + ups[1]["request_id"]
    assert json.loads(raw)["op"] == "topup" and GIFT not in raw


# -- 2. tickets ----------------------------------------------------------------------------------------------
def test_the_online_ticket_rides_on_each_booking_and_is_never_journaled_or_logged(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _gift(env)
    caplog.set_level(logging.DEBUG)
    port = Port(pin=[_block("2580")], topup_amount=["10"], choose=[0],
                menu=[*_menu("topup", "redeem"), 0, 0, *_menu("sign_out")])
    rig = Losing(env, tmp_path, port, presented=[GIFT, LOYAL])
    rig.desk(rig.attendant_card())
    [signed] = [a for a in rig.answers if a["op"] == "attendant_signin"]
    ticket = signed["result"]["ticket"]
    booked = [r for r in rig.seen if r["op"] in ("topup", "loyalty_redeem")]
    assert [(r["attendant"], r["ticket"]) for r in booked] == [("A-1", ticket)] * 2
    assert [f["ok"] for f in _results(port)][:2] == [True, True]
    assert ticket.encode() not in (tmp_path / "journal.db").read_bytes()
    assert ticket not in caplog.text and ticket.split(".")[1] not in caplog.text


def test_an_attendant_signed_in_offline_is_told_to_sign_in_online_and_nothing_is_asked(
        env: Env, tmp_path: Path) -> None:
    entry = {"id": "A-1", "name": "Ann", "role": "attendant",
             "pin_verifier": pin_verifier("2580", salt=b"s" * 16, iterations=1000),
             "card": stop_entry(derive_stop_key(PIN_KEY), "attendant:" + CLERK)}
    port = Port(offline_pin=[bytearray.fromhex("242580FFFFFFFFFF")],
                menu=[*_menu("topup", "redeem", "movements", "sign_out")])
    rig = Rig(env, tmp_path, port, entries=[entry], presented=[LOYAL])
    rig.link.up = False
    real = port.offline_pin

    def and_back(last_try: bool, tries: int | None = None) -> bytearray:
        rig.link.up = True                  # the registry is back once the PIN was checked offline
        return real(last_try, tries)

    port.offline_pin = and_back             # type: ignore[method-assign]
    rig.desk(rig.attendant_card())
    results = _results(port)
    assert results[:2] == [{"done": "topup", "ok": False, "reason": "not_signed_in"},
                           {"done": "redeem", "ok": False, "reason": "not_signed_in"}]
    assert rig.link.asked == ["loyalty_lookup"]          # movements only: a lookup needs no ticket
    for lang in LANGS:
        assert text(lang, "reason.not_signed_in") and text(lang, "menu.convert")


# -- 3. the lockout counter ----------------------------------------------------------------------------------
def test_the_local_counter_follows_the_registrys_and_refusals_are_shift_actions(env: Env,
                                                                                tmp_path: Path) -> None:
    port = Port(pin=[_block("1111"), _block("1111")], offline_pin=[bytearray.fromhex("241111FFFFFFFFFF")])
    rig = Rig(env, tmp_path, port)
    rig.desk(rig.attendant_card())
    rig.desk(rig.attendant_card())                       # two wrong online: the registry says 3 left
    assert rig.gate._wrong("A-1") == 2
    rig.link.up = False
    rig.desk(rig.attendant_card())                       # offline: 3 tries left, as the registry's
    assert port.pin_tries == [3] and rig.gate._wrong("A-1") == 3
    rig.link.up = True
    with env.sessions() as s:
        attendants.lock(s, "A-1", actor="op", reason="test", now=NOW)
        s.commit()
    port.script["pin"] = [_block("2580")]
    rig.desk(rig.attendant_card())                       # locked centrally: the limit here too
    assert rig.gate._wrong("A-1") == rig.gate.tries
    rig.link.up = False
    rig.desk(rig.attendant_card())
    assert port.pin_tries == [3]                         # locked offline: no PIN asked
    acts = [(a["action"], a["subject"]) for a in rig.book.actions(1)]
    assert acts == [("sign_in", "refused:wrong_pin")] * 3 + [("sign_in", "refused:locked")] * 2


def test_an_offline_try_is_counted_before_the_pin_is_checked(env: Env, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"id": "A-1", "name": "Ann", "role": "attendant",
             "pin_verifier": pin_verifier("2580", salt=b"s" * 16, iterations=1000),
             "card": stop_entry(derive_stop_key(PIN_KEY), "attendant:" + CLERK)}
    port = Port(offline_pin=[bytearray.fromhex("242580FFFFFFFFFF")] * 2, menu=[*_menu("sign_out")])
    rig = Rig(env, tmp_path, port, entries=[entry])
    rig.link.up = False
    counted: list[int] = []

    def power_cut(verifier: str, pin: str) -> bool:
        counted.append(rig.gate._wrong("A-1"))
        raise KeyboardInterrupt          # the terminal stops during the check
    monkeypatch.setattr("firmware.attendant.signin.pin_matches", power_cut)
    with pytest.raises(KeyboardInterrupt):
        rig.desk(rig.attendant_card())
    assert counted == [1] and rig.gate._wrong("A-1") == 1      # the try stays counted
    monkeypatch.setattr("firmware.attendant.signin.pin_matches", pin_matches)
    rig.desk(rig.attendant_card())
    assert rig.gate._wrong("A-1") == 0 and port.pin_tries == [5, 4]


# -- 4. riders -----------------------------------------------------------------------------------------------
def test_a_session_drops_a_rider_read_before_it(env: Env, tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("sign_out")])
    rig = Rig(env, tmp_path, port)
    rig.runner._riders["loyalty"] = (rig.clock.monotonic(), {"masked": "707701******0012"})
    rig.desk(rig.attendant_card())
    assert rig.runner._take_riders() == {}


# -- 5. the shift close --------------------------------------------------------------------------------------
def test_a_shift_close_is_one_transaction(env: Env, tmp_path: Path) -> None:
    rig = Rig(env, tmp_path, Port())
    rig.book.current()
    rig.journal._db.execute("CREATE TEMP TRIGGER no_next BEFORE UPDATE ON kv WHEN NEW.key = 'shift:current' "
                            "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(JournalError):
        rig.book.close("A-1")
    assert rig.book.z_report(1) is None and rig.book.unsent() == [] and rig.book.current().number == 1
    rig.journal._db.execute("DROP TRIGGER no_next")
    rig.book.close("A-1")
    assert rig.book.z_report(1) is not None and len(rig.book.unsent()) == 1 and rig.book.current().number == 2


def test_a_z_report_refused_for_good_is_set_aside_and_the_next_one_is_stored(env: Env,
                                                                               tmp_path: Path) -> None:
    port = Port(pin=[_block("2580")], menu=[*_menu("z_report"), 0, *_menu("sign_out")])
    rig = Rig(env, tmp_path, port)
    rig.link.up = False
    rig.book.close("A-" + "x" * 30)                      # an id the registry can never store
    rig.link.up = True
    rig.desk(rig.attendant_card())
    assert rig.book.refused() == {1: "not_allowed"} and rig.book.unsent() == []
    with env.sessions() as s:
        assert s.scalars(select(ShiftReport.shift)).all() == [2]


def test_a_shift_of_more_actions_than_a_z_report_carries_raises_an_alarm(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(env, tmp_path, Port())
    rig.book.current()
    act = json.dumps({"at": 1.0e9, "attendant": "A-1", "action": "reprint", "subject": "", "detail": {}})
    rig.journal.put_many({f"shift:act:{1:08d}:{n:06d}": act for n in range(1, MOST_ACTIONS + 2)})
    with caplog.at_level(logging.ERROR):
        _, doc = rig.book.close("A-1")
    assert [r for r in caplog.records if getattr(r, "alarm", "") == "shift_actions"]
    assert len(doc["actions"]) == MOST_ACTIONS + 1 and len(close_request(doc)["actions"]) == MOST_ACTIONS


# -- 6. rewards beyond nine, a pooled card -----------------------------------------------------------------
def test_rewards_beyond_nine_are_paged_and_the_last_key_turns_the_page(env: Env, tmp_path: Path) -> None:
    with env.sessions() as s:
        for n in range(2, 13):                           # Coffee (100) and eleven more: 12 rewards
            r = rewards.add_reward(s, f"Gift {n}", 10 * n, actor="op", now=NOW)
            rewards.set_stock(s, r.id, "ST-001", 1, actor="op", now=NOW)
        s.commit()

    class Choosing(Port):
        def choose(self, options: Sequence[str]) -> int:
            self.screens.append((Screen.CHOOSE_APP, {"options": list(options)}))
            return super().choose(options)

    port = Choosing(pin=[_block("2580")], choose=[PAGE, 2], menu=[*_menu("redeem"), 0, 0, *_menu("sign_out")])
    rig = Rig(env, tmp_path, port, presented=[LOYAL])
    rig.desk(rig.attendant_card())
    pages = [f["options"] for s, f in port.screens if s is Screen.CHOOSE_APP]
    assert [len(p) for p in pages] == [PAGE + 1, 12 - PAGE + 1] and pages[0][-1] == "» 2/2"
    assert pages[1][-1] == "» 1/2"
    slip = "\n".join(rig.printer.texts())
    assert pages[1][2].rsplit(" ", 1)[0] in slip                 # the reward picked on page 2
    assert page_labels([{"name": "A", "points": 1}] * 9, 0) == ["A 1"] * 9       # nine fit: no page key


def test_a_pooled_card_says_pooled_and_its_slip_prints_no_balance(env: Env, tmp_path: Path) -> None:
    with env.sessions() as s:
        [member] = s.scalars(select(LoyaltyMember.account_id)).all()
        pool = admin.create_account(s, "Fleet pool", issued_on=NOW.date(), actor="op", now=NOW)
        admin.set_pool(s, member, pool.id, actor="op", now=NOW)
        s.commit()
    port = Port(pin=[_block("2580")], menu=[*_menu("movements", "redeem"), 0, *_menu("sign_out")])
    rig = Rig(env, tmp_path, port, presented=[LOYAL, LOYAL])
    rig.desk(rig.attendant_card())
    results = _results(port)
    assert results[0] == {"done": "movements", "ok": True, "pooled": True}
    assert results[1] == {"done": "redeem", "ok": False, "reason": "pooled"}
    slip = "\n".join(rig.printer.texts())
    assert "pooled" in slip and "pts" not in slip.split("Balance", 1)[1].splitlines()[0]
    assert rig.link.asked.count("loyalty_redeem") == 0


# -- 7. points to credit -------------------------------------------------------------------------------------
def test_points_are_converted_to_credit_on_the_money_card_presented_next(env: Env, tmp_path: Path) -> None:
    wallet = _gift(env)
    port = Port(pin=[_block("2580")], convert_points=["300"], menu=[*_menu("redeem"), 1, *_menu("sign_out")])
    rig = Losing(env, tmp_path, port, presented=[LOYAL, GIFT], lose=["loyalty_convert"])
    rig.desk(rig.attendant_card())
    converts = [r for r in rig.seen if r["op"] == "loyalty_convert"]
    assert len(converts) == 2 and converts[0]["request_id"] == converts[1]["request_id"]
    assert converts[0]["points"] == 300 and "target_sealed" in converts[0]
    assert _balance(env, wallet) == 300                           # once, a cent a point
    assert _results(port)[0] == {"done": "convert", "ok": True, "balance": 200, "amount_cents": 300,
                                 "currency": "EUR"}
    slip = "\n".join(rig.printer.texts())
    assert "POINTS TO CREDIT" in slip and "3.00 EUR" in slip and "200 pts" in slip
    assert GIFT not in slip and LOYAL not in slip
    assert [(a["action"], a["detail"]) for a in rig.book.actions(1) if a["action"] == "convert"] == [
        ("convert", {"points": 300, "credit_cents": 300})]
