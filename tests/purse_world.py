"""One chip purse end to end, in process, for tests/test_purse_property.py: a registry on SQLite (its
bureau personalises the simulated card, its enrolment fits the simulated SAM), a terminal running the
real PurseProgram under the real SaleRunner on a real Journal, and the terminal's purse requests answered
by registry.service_desk.answer, each request and answer through contracts.service_messages.

The migrated registry (keys, CA, station, terminal) is made once (`Template`) and copied per world."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import service_messages as sv
from contracts.errors import HostUnavailable
from firmware.programs.base import ChipCard
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.program import PurseProgram
from firmware.programs.purse.service import contact_fields
from firmware.sale.journal import Journal
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleTimeouts, SaleWorld
from firmware.station import NozzlePrice, Station
from hostsim.cards.fleet import FleetCard
from hostsim.cards.purse_card import PurseCard, personalize
from hostsim.cards.purse_sam import PurseSam
from provisioning.sam import fit_sam
from registry.db import open_database
from registry.fleet import ledger
from registry.keys import RegistryKeys
from registry.models import Account, Card, Customer, Device, Movement, Wallet
from registry.models import Station as StationRow
from registry.purse.enrol import WalletSpec, card_wallets, new_purse_id, personalise_card
from registry.purse.issuer import IssuerKeys
from registry.purse.topups import order_topup
from registry.purse_models import ChipPurse, PurseFlag, PurseLoad, PurseRecord
from registry.service_desk import answer
from tests.sale_fakes import CANCEL, FakeClock, FakePumps, ListPrinter, ScriptedCardholder

STATION_ID = "ST-001"
TERMINALS = (("T-0001", bytes.fromhex("5A4D000000000001")), ("T-0002", bytes.fromhex("5A4D000000000002")))
PAN, PIN = "7077001234560019", "1234"
PIN_BLOCK = bytes.fromhex("241234FFFFFFFFFF")     # ISO 9564 format 2, as the PIN pad gives an offline PIN
LITRES = 20_000           # cl on the account's own volume wallet
CHIP = 5_000              # cl moved onto the chip wallet's shadow before personalisation: its opening
MOST_CL = 6_000           # the terminal's largest purse preset
STATION = Station("Test", prices=(NozzlePrice(1, 1, "diesel", "Diesel", 1659),),
                  codes3=(("diesel", 19),))


class Template:
    """A migrated registry file with its keys, the issuer's CA, a station and its two active terminals."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "template.db"
        self.keys = RegistryKeys(card_key=os.urandom(32), pin_key=os.urandom(32), kek=os.urandom(32))
        engine, sm = open_database(f"sqlite:///{self.path}")
        with sm() as s:
            s.add(StationRow(id=STATION_ID, name="Main street"))
            s.flush()
            s.add_all([Device(id=name, station_id=STATION_ID, pin_key_hex="00" * 16, status="active")
                       for name, _ in TERMINALS])
            IssuerKeys.load(s, self.keys, now=dt.datetime(2025, 1, 1))
            s.commit()
        engine.dispose()


class DeskService:
    """firmware.programs.purse.service.PurseService answered by the registry's service desk in process."""

    def __init__(self, world: World, terminal: str) -> None:
        self.world, self.terminal = world, terminal
        self.online = True
        self.sent: list[dict[str, Any]] = []          # every record item the registry acknowledged

    def ask(self, op: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        req = sv.decode_request(sv.encode_request({"request_id": str(uuid.uuid4()), "terminal": self.terminal,
                                                   "station": STATION_ID, "op": op, **fields}))
        with self.world.sm() as s:
            doc = answer(s, self.world.keys, req, self.world.now())
        got = sv.decode_response(sv.encode_response(doc))
        if not got["ok"]:
            raise HostUnavailable("the registry refused a purse request", op=op, reason=got["reason"])
        result: dict[str, Any] = got["result"]
        return result

    def contact(self, purse_id: bytes, counter: int, *, blocked: bool, pending: int | None = None,
                pending_sale: str | None = None) -> Mapping[str, Any]:
        # as firmware.programs.purse.service sends it
        return self.ask("purse_contact", contact_fields(purse_id, counter, blocked=blocked, pending=pending,
                                                        pending_sale=pending_sale))

    def load(self, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.ask("purse_load", fields)

    def records(self, sam_id: bytes, items: Sequence[Mapping[str, Any]],
                advices: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        fields: dict[str, Any] = {"sam_id": sam_id.hex(), "items": list(items)}
        if advices:
            fields["advices"] = list(advices)
        result = self.ask("purse_records", fields)
        self.sent.extend(dict(i) for i in items)
        return result

    def applied(self, purse_id: bytes, script_ids: Sequence[int]) -> int:
        return int(self.ask("purse_applied", {"purse_id": purse_id.hex(),
                                              "script_ids": list(script_ids)})["applied"])


class Slot:
    """A card reader slot (the terminal's Transmitter)."""

    def __init__(self, card: Any) -> None:
        self.card = card
        card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        answer_: bytes = self.card.apdu(apdu)
        return answer_


class Terminal:
    """One terminal of the station: its journal, its SAM (fitted by the registry), its purse program."""

    def __init__(self, world: World, name: str, sam_id: bytes, folder: Path) -> None:
        self.world, self.name, self.sam_id = world, name, sam_id
        self.service = DeskService(world, name)
        self.journal = Journal(folder / f"{name}.db")
        self.book = PurseBook(self.journal)
        sam = PurseSam(sam_id)
        fit_sam(sam.apdu, lambda fields: self.service.ask("sam_enrol", fields), now=int(world.clock.time()))
        self.program = PurseProgram(Slot(sam), self.book, most_cents=15_000, most_cl=MOST_CL,
                                    service=self.service)

    def serve(self, *, flow: int = 0) -> str | None:
        """The card inserted: with flow > 0 a purchase of up to `flow` cl, else the cardholder cancels at
        the PIN (an insertion that only brings the card up to date). The sale id, if one began."""
        clock = self.world.clock
        clock.advance(60)
        pumps = FakePumps(clock)
        script: dict[str, list[Any]] = {"offline_pin": [CANCEL]}
        if flow > 0:
            pumps.customer("lift", ("flow", flow), "hang_up")
            script = {"offline_pin": [bytearray(PIN_BLOCK)], "pump": [1]}
        port = ScriptedCardholder(**script)
        world = SaleWorld(terminal=self.name, station_id=STATION_ID, pump_numbers=(1,),
                          programs=[self.program], port=port, display=port, pumps=pumps,
                          printer=ListPrinter(), journal=self.journal,
                          station=lambda: STATION, token_key=b"k" * 32, spawn=lambda name, work: work(),
                          clock=clock, timeouts=SaleTimeouts(nozzle_lift=60.0, filling=600.0,
                                                             pump_offline=30.0))
        sale_id: str | None = SaleRunner(world).serve(ChipCard(Slot(self.world.card), b"\x3b"))
        return sale_id

    def forward_raw(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Records straight to the registry as this terminal's purse_records request."""
        return self.service.ask("purse_records", {"sam_id": self.sam_id.hex(), "items": items})

    def dispensed(self) -> int:
        """What this terminal's pump delivered, by its journal."""
        return sum(r.volume_cl or 0 for r in self.journal.all_sales())


class World:
    """The registry (a copy of the template), one account with a litres wallet and a chip wallet's shadow,
    the card the bureau made for it, and the station's two terminals."""

    def __init__(self, template: Template, folder: Path) -> None:
        db = folder / "registry.db"
        shutil.copyfile(template.path, db)
        self.engine, self.sm = open_database(f"sqlite:///{db}")
        self.keys = template.keys
        self.clock = FakeClock()
        with self.sm() as s:
            self._account(s)
            self.card = self._bureau(s)
            s.commit()
        self.terminals = [Terminal(self, name, sam_id, folder) for name, sam_id in TERMINALS]
        self.start_total = self.total()

    def close(self) -> None:
        for terminal in self.terminals:
            terminal.journal.close()
        self.engine.dispose()

    def now(self) -> dt.datetime:
        return self.clock.now().replace(tzinfo=None)

    def _account(self, s: Session) -> None:
        customer = Customer(name="Acme", kind="company", created_at=self.now())
        s.add(customer)
        s.flush()
        account = Account(name="Acme fleet", customer_id=customer.id)
        s.add(account)
        s.flush()
        litres = Wallet(account_id=account.id, allowed_products="019", unit="volume", name="litres")
        chip = Wallet(account_id=account.id, allowed_products="019", unit="volume", name="chip diesel")
        s.add_all([litres, chip])
        s.flush()
        self.account_id, self.litres, self.chip = account.id, litres.id, chip.id
        ledger.topup(s, litres, LITRES, key="seed:litres", at=self.now(), actor="test")
        ledger.transfer(s, litres, chip, CHIP, key="seed:chip", at=self.now(), actor="test")
        card = Card(token=self.keys.token(PAN), masked="707700******0019", account_id=account.id,
                    expiry="2912", pin_verifier="", status="active", status_changed_at=self.now())
        s.add(card)
        s.flush()
        self.card_id = card.id

    def _bureau(self, s: Session) -> PurseCard:
        """As hostsim.purse_factory.issue_purse_card does, on this session."""
        issuer = IssuerKeys.load(s, self.keys, now=self.now())
        card = s.get(Card, self.card_id)
        assert card is not None
        specs = [WalletSpec(number=0, wallet_id=self.chip, products=((19, 19),))]
        self.purse_id, opening = new_purse_id(s), card_wallets(s, card, specs)
        keys: dict[Any, bytes] = {}

        def certify(public_key: bytes) -> bytes:
            package = personalise_card(s, issuer, card_id=self.card_id, wallets=specs, now=self.now(),
                                       card_public_key=public_key, purse_id=self.purse_id, actor="test")
            keys.update(package.keys)
            return package.certificate
        return personalize(FleetCard(PAN, "2912", "ACME HAULAGE"), purse_id=self.purse_id, keys=keys,
                           pin=PIN, wallets=opening, ca_public_key=issuer.ca_public_key(), certify=certify)

    def order(self, amount: int) -> None:
        with self.sm() as s:
            order_topup(s, self.purse_id, 0, amount, actor="test", now=self.now())
            s.commit()

    # -- what each side holds -----------------------------------------------------------------------------
    def card_balance(self) -> int:
        return int(self.card.purse.state.stored.wallets[0].balance)

    def balance(self, wallet_id: int) -> int:
        with self.sm() as s:
            w = s.get(Wallet, wallet_id)
            assert w is not None
            return int(w.balance)

    def total(self) -> int:
        """All the account's value: its litres wallet and the chip wallet's shadow."""
        return self.balance(self.litres) + self.balance(self.chip)

    def dispensed(self) -> int:
        """What the pumps delivered on this card, by the terminals' journals."""
        return sum(t.dispensed() for t in self.terminals)

    def registry_facts(self) -> dict[str, Any]:
        with self.sm() as s:
            purse = s.scalar(select(ChipPurse).where(ChipPurse.purse_id == self.purse_id.hex()))
            assert purse is not None
            counted = list(s.scalars(select(PurseRecord).where(PurseRecord.purse_id == self.purse_id.hex(),
                                                               PurseRecord.counted.is_(True))))
            loads = list(s.scalars(select(PurseLoad).where(PurseLoad.purse_id == purse.id)))
            chip_sales = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0)).where(
                Movement.wallet_id == self.chip, Movement.kind == "chip_sale"))
            refunds = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0)).where(
                Movement.wallet_id == self.chip, Movement.kind == "refund"))
            flags = sorted({f.flag for f in s.scalars(select(PurseFlag))})
            return {"unsound": ledger.check(s), "flags": flags,
                    "counted": [(r.counter, r.kind, r.amount) for r in counted],
                    "loads": sorted((ld.counter, ld.status, ld.amount) for ld in loads),
                    "chip_sales": int(chip_sales or 0), "refunds": int(refunds or 0)}
