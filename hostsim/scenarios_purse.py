"""Issue 18 scenarios, wallets on the chip (docs/chip-wallets.md). Each scenario has its own fleet card of
account 120 (seed.toml), personalised here by the registry's bureau with a diesel wallet on the chip opening
at 100 L, the day's limit 60 L on the chip itself. The terminal's SAM sits in the simulator's second PC/SC
slot, fitted by the registry when the simulator starts (Simulator(purse=True)).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from contracts.purse_keys import Purpose
from contracts.purse_records import RECORD_LEN, Kind, PurchaseRecord, sign
from contracts.purse_records import decode as decode_record
from firmware.programs.purse.book import PurseBook
from hostsim.cards.purse_card import PurseCard
from hostsim.purse_factory import WalletSpec, issue_purse_card
from hostsim.scenarios_fleet2 import authorize, declined, registry_db, settle
from hostsim.scenarios_usb import _cli, _registry_key_args, provision_identity
from registry.fleet import ledger
from registry.models import Card, Movement, Wallet
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import flags
from registry.purse.topups import order_topup
from registry.purse_models import ChipPurse, PurseRecord

__all__ = ["PANS", "PURSE_PROGRAMS", "PURSE_SCENARIOS", "PURSE_SIM_OPTIONS"]

PANS = ("7077006000000018", "7077006000000026", "7077006000000034", "7077006000000042",
        "7077006000000059", "7077006000000067", "7077006000000075")
PIN = "1234"
OPENING_CL, DAY_CL = 10000, 6000
FUNDS_LITRES = 121                        # the account's litres bought, which top-ups are loaded from


def issue(run: Any, index: int) -> PurseCard:
    """The scenario's card, its chip personalised by the registry's bureau (the driver's PIN 1234)."""
    sim = run.sim
    card = issue_purse_card(sim.registry_url, sim.state / "registry", pan=PANS[index], pin=PIN,
                            holder="ACME DRIVER", on_tear=sim.cards.remove,
                            wallets=[WalletSpec(0, 122 + index, products=((19, 19),), day_limit=DAY_CL)])
    run.log(f"bureau personalised card ...{PANS[index][-4:]}: chip diesel wallet 100.00 L, 60.00 L a day")
    return card


def balance(card: PurseCard) -> int:
    return card.purse.state.stored.wallets[0].balance


def insert(run: Any, card: PurseCard) -> int:
    mark: int = run.sim.panel.mark()
    run.log("driver inserts the chip card")
    run.sim.cards.insert(card)
    return mark


def buy(run: Any, card: PurseCard, volume_cl: int, *, synced: bool = True) -> Any:
    """In, PIN, fill, the card pays, out: the sale as journaled (synced: once the registry has it)."""
    mark = insert(run, card)
    screen = authorize(run, mark)
    run.check(screen["screen"] == "lift_nozzle", f"the chip wallet grants, got {screen['screen']}")
    run.fill(1, 1, volume_cl)
    rec = settle(run, mark, synced=synced)
    run.remove()
    run.wait(("idle", "idle_bank_only"), mark, timeout=30)
    return rec


def registry_view(run: Any, index: int) -> dict[str, Any]:
    """The registry's side of the card: counted records, flags, the shadow balance, the ledger's sum."""
    with registry_db(run.sim) as (s, keys):
        card_id = s.scalar(select(Card.id).where(Card.token == keys.token(PANS[index])))
        purse = s.scalar(select(ChipPurse).where(ChipPurse.card_id == card_id))
        if purse is None:
            return {}
        records = s.scalars(select(PurseRecord).where(PurseRecord.purse_id == purse.purse_id)).all()
        shadow = s.get(Wallet, 122 + index)
        moved = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                         .where(Movement.wallet_id == 122 + index))
        return {"purse": purse.purse_id, "counted": sum(1 for r in records if r.counted_key),
                "stored": len(records), "flags": sorted(f.flag for f in flags(s, purse.purse_id)),
                "shadow": shadow.balance if shadow else None, "ledger_sum": moved,
                "ledger_ok": ledger.check(s) == []}


def until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def agrees(run: Any, index: int, card: PurseCard, counted: int) -> None:
    """Card, shadow and ledger agree once the registry counted `counted` records of the card."""
    run.check(until(lambda: registry_view(run, index).get("counted") == counted),
              f"the registry counted {counted} records of the card: {registry_view(run, index)}")
    view = registry_view(run, index)
    run.check(view["shadow"] == balance(card) == view["ledger_sum"] and view["ledger_ok"],
              f"chip {balance(card)} cl, shadow {view['shadow']}, ledger {view['ledger_sum']}")
    run.log(f"registry: {view['counted']} records counted, shadow {view['shadow']} cl = chip, flags "
            f"{view['flags'] or 'none'}")


def registry_down(run: Any) -> None:
    run.sim.registry.stop()
    run.sim.registry = None
    run.log("registry stopped")


def registry_up(run: Any) -> None:
    run.sim.start_registry()
    run.log("registry started again")


# -- the scenarios --------------------------------------------------------------------------------------
def offline_sale(run: Any) -> None:
    """Registry down: the card pays 15 L from its diesel wallet; the proof is verified when it returns."""
    run.ready()
    card = issue(run, 0)
    registry_down(run)
    printed = len(run.sim.printer.receipts)
    rec = buy(run, card, 1500, synced=False)
    run.check(rec.volume_cl == 1500 and balance(card) == OPENING_CL - 1500,
              f"15.00 L debited on the chip: {balance(card)} cl left")
    run.sim.printer.wait_receipts(printed + 1, 10)
    receipt = run.sim.printer.receipts[printed]
    run.check("Chip wallet" in receipt and "85.00 L" in receipt and PANS[0] not in receipt,
              "the receipt shows the chip wallet and its new balance, 85.00 L")
    run.check(registry_view(run, 0)["counted"] == 0, "nothing reached the registry yet")
    registry_up(run)
    agrees(run, 0, card, 1)
    run.check(registry_view(run, 0)["flags"] == [], "the record's signature, counter and balance hold")


def card_pulled(run: Any) -> None:
    """The card leaves as the filling ends, before it settled: the next insertion completes it, once."""
    run.ready()
    card = issue(run, 1)
    card.tear_at("settle", "before_commit")
    rec = buy(run, card, 2000)
    run.check("purse_pending" in rec.flags and balance(card) == OPENING_CL,
              f"not debited yet, the sale flagged: {rec.flags}")
    run.check(card.purse.state.stored.pending is not None, "the reservation is still open on the card")
    mark = insert(run, card)
    run.wait("enter_pin", mark)
    run.log("driver presses CANCEL at the PIN")
    run.sim.panel.press("CANCEL")
    run.remove()
    run.check(card.purse.state.stored.pending is None and balance(card) == OPENING_CL - 2000,
              f"completed once with the 20.00 L dispensed: {balance(card)} cl")
    agrees(run, 1, card, 1)
    mark = insert(run, card)
    run.wait("enter_pin", mark)
    run.sim.panel.press("CANCEL")
    run.remove()
    run.check(balance(card) == OPENING_CL - 2000, "a third insertion changes nothing")


def load(run: Any) -> None:
    """A top-up ordered centrally: refused while the registry is away, loaded at the next online contact."""
    run.ready()
    card = issue(run, 2)
    with registry_db(run.sim) as (s, _):
        order_topup(s, card.purse.state.keys.card_id, 0, 2500, actor="scenario", now=_now())
        s.commit()
    run.log("the fleet manager orders 25.00 L onto the chip's diesel wallet")
    registry_down(run)
    mark = insert(run, card)
    run.wait("enter_pin", mark)
    run.sim.panel.press("CANCEL")
    run.remove()
    shown = [s["screen"] for s in run.sim.panel.screens[mark:]]
    run.check("card_loaded" not in shown and balance(card) == OPENING_CL,
              "offline: no load, the chip keeps 100.00 L")
    registry_up(run)
    run.check(until(lambda: run.sim.panel.screens[-1]["screen"] == "idle", 30),
              "the terminal is online again")
    litres_before = _wallet(run, FUNDS_LITRES)
    mark = insert(run, card)
    loaded = run.wait("card_loaded", mark, timeout=30)
    run.wait("enter_pin", mark)
    run.sim.panel.press("CANCEL")
    run.remove()
    run.check(balance(card) == OPENING_CL + 2500, f"the chip took 25.00 L: {balance(card)} cl ({loaded})")
    agrees(run, 2, card, 1)
    run.check(_wallet(run, FUNDS_LITRES) == litres_before - 2500, "the litres came from the account")


def replay(run: Any) -> None:
    """A purchase record replayed, and one forged at a counter already used: neither counts twice."""
    run.ready()
    card = issue(run, 3)
    buy(run, card, 1000)
    agrees(run, 3, card, 1)
    [original] = [raw for raw in card.purse.state.stored.log
                  if decode_record(raw[:RECORD_LEN]).kind is Kind.PURCHASE]
    record: PurchaseRecord = decode_record(original[:RECORD_LEN])
    with registry_db(run.sim) as (s, keys):
        key = IssuerKeys.load(s, keys, now=_now()).card_key(record.card_id, Purpose.RECORD, 1)
    forged = sign(key, PurchaseRecord(**{**record.__dict__, "amount": 10, "new_balance":
                                         record.previous_balance - 10}))
    journal = run.sim.journal()
    try:
        book = PurseBook(journal)
        book.queue(original)                 # the same record again
        run.log("the terminal forwards the card's record a second time")
    finally:
        journal.close()
    run.check(until(lambda: _outbox(run) == 0), "the terminal handed it over")
    journal = run.sim.journal()
    try:
        PurseBook(journal).queue(forged)
        run.log("a record forged at the same counter (a cloned card's key) is forwarded")
    finally:
        journal.close()
    run.check(until(lambda: "replay" in registry_view(run, 3)["flags"]), "the registry flags the replay")
    agrees(run, 3, card, 1)


def limit(run: Any) -> None:
    """The card's own day counter: 60 L today, the second filling is refused by what the chip counts."""
    run.ready()
    card = issue(run, 4)
    buy(run, card, DAY_CL)
    mark = insert(run, card)
    declined(run, mark, authorize(run, mark), "limit_exhausted")
    run.check(balance(card) == OPENING_CL - DAY_CL, "the chip kept 40.00 L, today's 60.00 L used")
    agrees(run, 4, card, 1)


def flash_drive(run: Any) -> None:
    """Registry away: the record travels on a bundle file; imported twice, counted once."""
    run.ready()
    sim = run.sim
    card = issue(run, 5)
    ca_dir = provision_identity(sim)
    stick = sim.state / "stick-purse"
    stick.mkdir(exist_ok=True)
    registry_down(run)
    buy(run, card, 1200, synced=False)
    bundle = stick / "sales.fcb"
    done = _cli(run, "export-sales", "--config", str(sim.terminal_config), "-o", str(bundle),
                *_registry_key_args(sim, stick))
    run.check(done.returncode == 0 and "chip purse record" in done.stdout, "the record is on the stick")
    registry = ["--db", sim.registry_url, "--state-dir", str(sim.state / "registry"),
                "--tls-dir", str(ca_dir)]
    first = _cli(run, "import-sales", *registry, str(bundle))
    run.check(first.returncode == 0 and "1 counted" in first.stdout, "the first import counts it")
    second = _cli(run, "import-sales", *registry, str(bundle))
    run.check(second.returncode == 0 and "nothing new" in second.stdout, "the second import counts nothing")
    agrees(run, 5, card, 1)
    registry_up(run)
    run.check(until(lambda: _outbox(run) == 0, 30), "back online, the terminal's copy is acknowledged too")
    agrees(run, 5, card, 1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _wallet(run: Any, wallet_id: int) -> int:
    with registry_db(run.sim) as (s, _):
        wallet = s.get(Wallet, wallet_id)
        return wallet.balance if wallet is not None else -1


def _outbox(run: Any) -> int:
    journal = run.sim.journal()
    try:
        return len(PurseBook(journal).outgoing())
    finally:
        journal.close()


PURSE_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "chip-wallet-offline-sale": offline_sale, "chip-wallet-card-pulled": card_pulled,
    "chip-wallet-load": load, "chip-wallet-replay": replay, "chip-wallet-limit": limit,
    "chip-wallet-flash-drive": flash_drive,
}

# `forecourt sim --scenario chip-wallet-...`: the simulator with the SAM in its second slot, the purse program
PURSE_PROGRAMS = ("purse", "fleet", "bank")
PURSE_SIM_OPTIONS: dict[str, dict[str, Any]] = {
    name: {"programs": PURSE_PROGRAMS, "purse": True} for name in PURSE_SCENARIOS}
