"""firmware.programs.voucher: a paper voucher's code typed at the idle screen, redeemed once by the registry,
a sale of its litres of its product charged nothing, a sale of nothing giving it back. The real sale
machine and journal run the sale; the registry's real service desk and voucher module answer over a test
double of the MQTT link only (tests/test_loyalty_adjunct.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_service import NOW, Env, sqlite_env

from contracts import messages as m
from contracts.errors import SaleCancelled
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.hostlink import sale_payload
from firmware.programs.base import Contactless, TypedCode
from firmware.programs.voucher import CODE_DIGITS, VoucherProgram
from firmware.programs.voucher.program import NOT_RELEASED, REQUEST, SEALED, VOUCHER
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.service_client import ServiceClient, new_request_id
from firmware.terminal.cardholder import CODE_KEY, PanelCardholder
from registry import vouchers
from registry.models import Voucher
from tests.sale_fakes import FakeClock, FakePumps, ListPrinter, ScriptedCardholder, make_runner
from tests.test_cardholder import Clock, Panel, PinPad
from tests.test_loyalty_adjunct import DeskLink, Host


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def issue(env: Env, product: str = "diesel", volume_cl: int = 2000) -> tuple[int, str]:
    with env.sessions() as s:
        made = vouchers.issue(s, env.keys, product=product, volume_cl=volume_cl, count=1, expires_on=None,
                              now=NOW, actor="op")
        s.commit()
    return made[0].voucher_id, made[0].code


def status(env: Env, voucher: int) -> str:
    with env.sessions() as s:
        row = s.get(Voucher, voucher)
        assert row is not None
        return row.status


class Terminal:
    """One pump (diesel on nozzle 1, Super 95 on nozzle 2) and the voucher program."""

    def __init__(self, tmp: Path, env: Env) -> None:
        self.link = DeskLink(env)
        self.host = Host(self.link)
        self.program = VoucherProgram(self.host, ServiceClient(self.host).ask)
        self.clock = FakeClock()
        self.pumps = FakePumps(self.clock)
        self.port = ScriptedCardholder()
        self.printer = ListPrinter()
        self.journal = Journal(tmp / "journal.db")
        self.runner = make_runner(self.journal, [self.program], self.port, self.pumps, self.printer,
                                  self.clock)

    def refused(self) -> str:
        screen, fields = self.port.screens[-1]
        assert screen is Screen.VOUCHER_REFUSED
        return str(fields["voucher"])


@pytest.fixture
def terminal(tmp_path: Path, env: Env) -> Iterator[Terminal]:
    t = Terminal(tmp_path, env)
    yield t
    t.journal.close()


def test_the_code_length_is_the_registrys() -> None:
    assert CODE_DIGITS == vouchers.CODE_DIGITS == 19


def test_a_typed_code_never_shows_in_a_repr() -> None:
    code = TypedCode("1234567890123456785")
    assert "1234567890123456785" not in repr(code) and code.hint == "6785"


# -- a voucher sale -----------------------------------------------------------------------------------
def test_a_voucher_fills_its_litres_of_its_product_and_charges_nothing(terminal: Terminal, env: Env,
                                                                        tmp_path: Path) -> None:
    voucher, code = issue(env, "diesel", 2000)
    terminal.pumps.customer("lift", ("flow", 3000), "hang_up")        # the pump stops at the preset
    sale_id = terminal.runner.serve(TypedCode(code))
    assert sale_id is not None
    rec = terminal.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.program == "voucher"
    assert rec.nozzles == (1,) and rec.preset is not None
    assert (rec.preset.kind, rec.preset.value) == ("volume", 2000)
    assert rec.volume_cl == 2000 and rec.amount_cents and rec.charged_cents == 0
    assert rec.reference == str(voucher) and rec.data[VOUCHER] == voucher
    assert rec.card_masked == "*" * 15 + code[-4:]
    assert code not in str(rec) and code.encode() not in (tmp_path / "journal.db").read_bytes()
    assert status(env, voucher) == "redeemed"
    payload = sale_payload(rec, "T-0001", "ST-001")
    wire = m.decode(m.encode(payload, m.SALE), m.SALE)
    assert (wire["kind"], wire["voucher"]) == ("voucher", voucher)
    assert env.record(wire)["status"] == "stored"                    # the registry: spent for good
    with env.sessions() as s:
        assert s.get(Voucher, voucher).sale_id == sale_id and "voucher_not_redeemed" not in str(
            env.transaction(sale_id).flags)
        assert not vouchers.release(s, voucher, terminal="T-0001", now=NOW, request=rec.data[REQUEST])
    texts = terminal.printer.texts()
    assert "Paid by voucher" in texts and not any("Fleet" in t or t.startswith("Auth") for t in texts)
    assert any(t.startswith("Voucher no.") and t.endswith(str(voucher))
                                              for t in texts)
    assert code not in "\n".join(texts)


def test_a_second_use_is_refused_with_its_text(terminal: Terminal, env: Env) -> None:
    _, code = issue(env)
    terminal.pumps.customer("lift", ("flow", 500), "hang_up")
    assert terminal.runner.serve(TypedCode(code)) is not None
    again = terminal.runner.serve(TypedCode(code))
    assert again is not None
    rec = terminal.journal.get(again)
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.DO_NOT_HONOUR)
    assert terminal.refused() == "voucher_used"


def test_a_mistyped_code_is_refused_without_asking_the_registry(terminal: Terminal, env: Env) -> None:
    _, code = issue(env)
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)           # the check digit no longer fits
    assert terminal.runner.serve(TypedCode(wrong)) is None
    assert terminal.refused() == "voucher_unknown" and terminal.link.requests == 0
    assert terminal.runner.serve(TypedCode(code[:-1])) is None     # too short
    assert terminal.link.requests == 0 and terminal.journal.open_sales() == []


def test_an_unknown_code_is_refused_by_the_registry(terminal: Terminal) -> None:
    assert terminal.runner.serve(TypedCode("1234567890123456785")) is not None
    assert terminal.refused() == "voucher_unknown" and terminal.link.requests == 1


def test_a_sale_of_nothing_gives_the_voucher_back(terminal: Terminal, env: Env) -> None:
    voucher, code = issue(env)
    sale_id = terminal.runner.serve(TypedCode(code))              # nobody lifts the nozzle
    assert sale_id is not None
    rec = terminal.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 0 and NOT_RELEASED not in rec.flags
    assert status(env, voucher) == "issued"
    terminal.pumps.customer("lift", ("flow", 500), "hang_up")
    again = terminal.runner.serve(TypedCode(code))                 # usable again
    assert again is not None and terminal.journal.get(again).volume_cl == 500


def test_a_release_the_registry_cannot_hear_is_flagged(terminal: Terminal, env: Env) -> None:
    voucher, code = issue(env)
    real = terminal.link.request

    def then_lost(topic: str, payload: bytes, inbox: str, timeout: float) -> bytes:
        got = real(topic, payload, inbox, timeout)
        terminal.link.connected = False                          # gone after the redemption
        return got

    terminal.link.request = then_lost            # type: ignore[method-assign]
    sale_id = terminal.runner.serve(TypedCode(code))
    assert sale_id is not None
    assert NOT_RELEASED in terminal.journal.get(sale_id).flags and status(env, voucher) == "redeemed"


def test_a_voucher_of_a_product_the_pump_has_not_is_given_back(terminal: Terminal, env: Env) -> None:
    voucher, code = issue(env, "adblue", 1000)
    sale_id = terminal.runner.serve(TypedCode(code))
    assert sale_id is not None
    rec = terminal.journal.get(sale_id)
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.PRODUCT_NOT_ALLOWED)
    assert status(env, voucher) == "issued"


def test_offline_no_voucher_is_taken(terminal: Terminal, env: Env) -> None:
    _, code = issue(env)
    terminal.link.connected = False
    assert terminal.runner.serve(TypedCode(code)) is None
    assert terminal.port.screens[-1][0] is Screen.HOST_UNAVAILABLE and terminal.link.requests == 0


def test_a_restart_after_the_redemption_gives_the_voucher_back(terminal: Terminal, env: Env) -> None:
    voucher, code = issue(env)
    rid = new_request_id()
    with env.sessions() as s:          # redeemed for this terminal, the answer journaled, then a crash
        vouchers.redeem(s, env.keys, code, terminal="T-0001", station="ST-001", now=NOW, request=rid)
    terminal.journal.begin_sale("s-1", 1, "*" * 15 + code[-4:], "t", program="voucher")
    terminal.journal.transition("s-1", SaleState.AUTHORIZING, data={VOUCHER: voucher, REQUEST: rid})
    assert terminal.runner.recover_interrupted() == ["s-1"]
    rec = terminal.journal.get("s-1")
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 0
    assert status(env, voucher) == "issued"


def test_a_restart_before_the_answer_is_interrupted(terminal: Terminal) -> None:
    terminal.journal.begin_sale("s-2", 1, "*" * 19, "t", program="voucher")
    terminal.journal.transition("s-2", SaleState.AUTHORIZING, data={})
    terminal.runner.recover_interrupted()
    assert (terminal.journal.get("s-2").state, terminal.journal.get("s-2").reason) == (
        SaleState.DECLINED, DeclineReason.INTERRUPTED)


def test_other_cards_are_not_the_voucher_programs(terminal: Terminal) -> None:
    assert terminal.program.claim(Contactless(b"\x04\x01\x02\x03")) is None


# -- typing the code at the idle screen -------------------------------------------------------------------
def port(*keys: str) -> tuple[PanelCardholder, Panel]:
    clock = Clock()
    panel = Panel(clock, *keys)
    p = PanelCardholder(panel, PinPad(), None, timeout=30.0, home="en", clock=clock, sleep=clock.sleep)
    p.code_digits = 19
    return p, panel


def test_the_code_key_asks_for_a_code_shown_as_stars_only() -> None:
    code = "1234567890123456785"
    p, panel = port(CODE_KEY, *code[:3], "CLEAR", *code, "ENTER")
    assert p.idle_key(0.05) and p.code_wanted
    assert p.type_code() == code and not p.code_wanted
    shown = [f for s, f in panel.screens if s == Screen.ENTER_VOUCHER]
    assert shown[0] == {"stars": "", "digits": 19} and shown[-1]["stars"] == "*" * 19
    assert shown[3]["stars"] == "***" and shown[4]["stars"] == ""      # CLEAR started again
    assert code not in repr(panel.screens)


def test_a_short_code_is_not_taken_and_cancel_ends_it() -> None:
    p, _ = port(*"12345", "ENTER", "CANCEL")
    with pytest.raises(SaleCancelled):
        p.type_code()


def test_without_the_voucher_program_the_key_asks_nothing() -> None:
    p, _ = port(CODE_KEY)
    p.code_digits = 0
    assert not p.idle_key(0.05) and not p.code_wanted



# -- the request id: journaled first, asked again under it ---------------------------------------------
def test_a_lost_answer_is_asked_again_under_the_same_request_and_the_voucher_is_taken_once(
        terminal: Terminal, env: Env, tmp_path: Path) -> None:
    voucher, code = issue(env, "diesel", 2000)
    terminal.link.lose = 1                      # the registry redeemed it; its answer never came back
    terminal.pumps.customer("lift", ("flow", 800), "hang_up")
    sale_id = terminal.runner.serve(TypedCode(code))
    assert sale_id is not None
    rec = terminal.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 800 and rec.data[VOUCHER] == voucher
    asked = [r for r in terminal.link.seen if r["op"] == "voucher_redeem"]
    assert len(asked) == 2 and asked[0]["request_id"] == asked[1]["request_id"] == rec.data[REQUEST]
    assert SEALED not in rec.data and status(env, voucher) == "redeemed"
    assert code.encode() not in (tmp_path / "journal.db").read_bytes()


def test_a_restart_before_the_answer_asks_again_and_gives_the_voucher_back(terminal: Terminal,
                                                                           env: Env) -> None:
    voucher, code = issue(env)
    rid = new_request_id()
    sealed = terminal.host.seal_for_sale(code, rid)
    with env.sessions() as s:          # the registry took it under the journaled request; then a crash
        vouchers.redeem(s, env.keys, code, terminal="T-0001", station="ST-001", now=NOW, request=rid)
    terminal.journal.begin_sale("s-3", 1, "*" * 15 + code[-4:], "t", program="voucher")
    terminal.journal.transition("s-3", SaleState.AUTHORIZING, data={REQUEST: rid, SEALED: sealed})
    assert terminal.runner.recover_interrupted() == ["s-3"]
    rec = terminal.journal.get("s-3")
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 0 and rec.data[VOUCHER] == voucher
    assert rec.data[SEALED] is None and status(env, voucher) == "issued"
    release = [r for r in terminal.link.seen if r["op"] == "voucher_release"]
    assert [(r["voucher"], r["request"]) for r in release] == [(voucher, rid)]


def test_a_restart_before_the_registry_got_the_request_leaves_the_voucher_usable(terminal: Terminal,
                                                                          env: Env) -> None:
    voucher, code = issue(env)
    rid = new_request_id()
    terminal.journal.begin_sale("s-4", 1, "*" * 15 + code[-4:], "t", program="voucher")
    terminal.journal.transition("s-4", SaleState.AUTHORIZING,
                                data={REQUEST: rid, SEALED: terminal.host.seal_for_sale(code, rid)})
    terminal.runner.recover_interrupted()
    rec = terminal.journal.get("s-4")
    # asked again, the registry redeemed it then: given back at once (a sale of nothing)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 0 and status(env, voucher) == "issued"
