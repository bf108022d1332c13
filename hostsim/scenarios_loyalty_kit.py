"""What the issue 15 scenarios share: the operator's commands, the cards' chips, the registry's ledger as
an operator reads it, and a sale the terminal made weeks ago reaching the registry only now
(store-and-forward), for the expiry scenario.

Card numbers are test values (ISO/IEC 7812-1 major industry identifier 7, Luhn check digit): IIN 707701
loyalty, 707702 prepaid and gift, 707703 attendant. Each scenario has its own cards and accounts, so all
nine run on one simulator in any order.

The loyalty programme is set by the operator with `forecourt registry loyalty` (the registry's seed knows
no loyalty tables): 1 point per litre of anything, once per simulator (the first scenario needing it).
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from contracts import protocol
from contracts.messages import SALE, encode
from contracts.panseal import derive_pan_key, seal_pan
from drivers.mqtt.link import tls_context
from hostsim.cards.fleet import FleetCard
from hostsim.scenarios_fleet2 import registry_db
from hostsim.services import child_env, forecourt_command
from registry.models import Card, EarnRule, Movement, Transaction, Wallet

__all__ = [
    "EXPIRY",
    "Done",
    "card_of",
    "chip",
    "late_sale",
    "ledger",
    "loyalty_account",
    "must",
    "number_in",
    "operator",
    "programme",
    "sale_amount",
    "use_runner",
    "wallets_of",
]

ACTOR = "operator1"
EXPIRY = "2912"
DIESEL_MILLI = 1659            # seed.toml: diesel on pump 1 nozzle 1


@dataclass(frozen=True)
class Done:
    """An operator command's exit code and what it printed."""

    code: int
    out: str
    err: str


# Runs `forecourt ARGV` with this standard input: (exit code, stdout, stderr). A separate process by
# default, as the operator's shell would; a test may run the command line in its own process instead
# (use_runner), since each process costs seconds on a small machine.
Runner = Callable[[list[str], str], tuple[int, str, str]]


def _process(argv: list[str], stdin: str) -> tuple[int, str, str]:
    done = subprocess.run(forecourt_command(*argv), input=stdin, capture_output=True, text=True,
                          env=child_env(), timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


_runner: list[Runner] = [_process]


def use_runner(runner: Runner | None) -> None:
    """Run the operator's commands with this (None: a process each, the default)."""
    _runner[0] = runner or _process


def operator(run: Any, *args: str, stdin: str = "", keys: bool = False) -> Done:
    """`forecourt registry ARGS --db ... --actor operator1` as the operator types it; stdin: the card
    number (and PIN) piped in, never on the command line; keys: the command reads the registry's
    card-token keys (--state-dir). The transcript shows the command, never the number."""
    argv = ["registry", *args, "--db", run.sim.registry_url, "--actor", ACTOR]
    if keys:
        argv += ["--state-dir", str(run.sim.state / "registry")]
    code, out, err = _runner[0](argv, stdin)
    piped = "printf '<card number>' | " if stdin else ""
    run.log(f"operator: {piped}forecourt registry {' '.join(args)}  -> exit {code}")
    for line in (out + err).splitlines():
        run.log("  " + line)
    return Done(code, out, err)


def must(run: Any, *args: str, stdin: str = "", keys: bool = False) -> str:
    """An operator command that must succeed; its output."""
    done = operator(run, *args, stdin=stdin, keys=keys)
    if done.code != 0:
        raise RuntimeError(f"forecourt registry {' '.join(args[:2])} failed ({done.code}): {done.err[:200]}")
    return done.out


def number_in(text: str, pattern: str) -> int:
    """The number a command printed, e.g. number_in(out, r"card (\\d+)")."""
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in {text[:200]!r}")
    return int(found.group(1))


def chip(run: Any, pan: str, holder: str) -> int:
    """The driver inserts a chip card with this number; the panel's mark before it."""
    mark: int = run.sim.panel.mark()
    run.log(f"driver inserts card ...{pan[-4:]} ({holder})")
    run.sim.cards.insert(FleetCard(pan=pan, expiry=EXPIRY, holder=holder))
    return mark


def sale_amount(volume_cl: int, price_milli: int = DIESEL_MILLI) -> int:
    return (volume_cl * price_milli + 500) // 1000


def card_of(sim: Any, number: str) -> int | None:
    """The registry's card id for a number (by its keyed token)."""
    with registry_db(sim) as (s, keys):
        card_id: int | None = s.scalar(select(Card.id).where(Card.token == keys.token(number)))
        return card_id


def wallets_of(sim: Any, account_id: int) -> dict[str, int]:
    """An account's wallets (credits) by name: their ids."""
    with registry_db(sim) as (s, _):
        return {w.name: w.id for w in s.scalars(select(Wallet).where(Wallet.account_id == account_id))}


def ledger(sim: Any, wallet_id: int) -> dict[str, Any]:
    """A wallet's balance, the sum of its movements and the movements (kind, amount, key)."""
    with registry_db(sim) as (s, _):
        wallet = s.get(Wallet, wallet_id)
        moves = s.scalars(select(Movement).where(Movement.wallet_id == wallet_id).order_by(Movement.id)).all()
        return {"balance": None if wallet is None else wallet.balance, "sum": sum(m.amount for m in moves),
                "movements": [(m.kind, m.amount, m.key) for m in moves]}


def programme(run: Any) -> None:
    """The base earn rule (1 point per litre of any product), unless the registry has one already."""
    with registry_db(run.sim) as (s, _):
        rules = s.scalar(select(func.count()).select_from(EarnRule))
    if not rules:
        must(run, "loyalty", "rule", "add", "--product", "*", "--basis", "volume", "--points", "1")


def loyalty_account(run: Any, name: str, pan: str, *, issued_on: dt.date | None = None) -> tuple[int, int]:
    """A loyalty account with one chip card: (account id, its points wallet id)."""
    args = ["loyalty", "account", "add", "--name", name]
    if issued_on is not None:
        args += ["--issued-on", issued_on.isoformat()]
    account = number_in(must(run, *args), r"account (\d+)")
    must(run, "loyalty", "account", "card", str(account), "--number", "-", "--expiry", "2912",
         stdin=pan + "\n", keys=True)
    with registry_db(run.sim) as (s, _):
        wallet = s.scalar(select(Wallet.id).where(Wallet.account_id == account))
    if wallet is None:
        raise RuntimeError(f"loyalty account {account} has no points wallet")
    return account, wallet


def late_sale(run: Any, loyalty_number: str, finished: dt.datetime, volume_cl: int) -> str:
    """A bank-card sale of diesel on pump 1 that the terminal journaled at `finished` (naive UTC) with this
    loyalty card shown, reaching the registry only now, as after a long outage (the registry takes sales
    up to 62 days old: registry.checks.MAX_AGE). Published on the terminal's sales topic as the terminal
    sends it (the loyalty number sealed with the terminal's key, bound to the sale); its id, once stored."""
    sim, device = run.sim, run.sim.device
    sale_id = str(uuid.uuid4())
    key = derive_pan_key(bytes.fromhex(device["pin_key"]))
    doc = {"sale_id": sale_id, "kind": "bank", "auth_id": None, "terminal": device["id"],
           "station": device["station"], "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": volume_cl,
           "amount_cents": sale_amount(volume_cl), "price_milli": DIESEL_MILLI,
           "card_masked": "476173******0010", "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "recovered": False, "flags": [],
           "loyalty_sealed": seal_pan(key, loyalty_number, request_id=sale_id, terminal=device["id"],
                                      station=device["station"]),
           "loyalty_medium": "chip"}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"late-sale-{sale_id[:8]}",
                         protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(sim.service_tls("registry")))
    client.connect("127.0.0.1", sim.broker_port)
    client.loop_start()
    try:
        client.publish(protocol.topic("sales", terminal=device["id"]), encode(doc, SALE),
                       qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    run.log(f"a sale journaled {finished:%Y-%m-%d %H:%M} UTC with loyalty card ...{loyalty_number[-4:]} "
            "reaches the registry now")
    _stored(run, sale_id)
    return sale_id


def _stored(run: Any, sale_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with registry_db(run.sim) as (s, _):
            if s.scalar(select(Transaction.id).where(Transaction.sale_id == sale_id)) is not None:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the registry never stored sale {sale_id}")
