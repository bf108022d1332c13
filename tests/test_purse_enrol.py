"""registry.purse.enrol and hostsim.purse_factory on a real SQLite registry with real keys: a SAM enrolled and
personalised through its APDUs (its sealed key opens only in it, its MACs verify under the issuer's SAM key,
enrolment again is idempotent, another terminal's claim is refused), and the card bureau's purse card
authenticating with that SAM, its records verifying under the issuer's RECORD key and counting once.
The `reg` fixture and `purchase` serve tests/test_provision_sam.py too."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import contracts.purse_apdu as apdu
from contracts import purse_sam_apdu as sa
from contracts.purse_keys import Purpose, Unit
from contracts.purse_records import Kind, PurchaseRecord
from contracts.purse_seal import SealError, open_sealed, sam_key_context
from contracts.purse_session import Role, load_public_key, open_certificate
from contracts.purse_wallets import LogEntry
from hostsim.cards.purse_card import PurseCard
from hostsim.cards.purse_sam import PurseSam
from hostsim.purse_factory import fit_sam, issue_purse_card
from registry.db import open_database
from registry.fleet import ledger
from registry.fleet_models import AuditEntry
from registry.keys import RegistryKeys, load_or_create_keys
from registry.models import Account, Card, Customer, Device, Station, Wallet
from registry.purse.enrol import (
    REPLACED,
    SAM_TAKEN,
    EnrolmentRefused,
    WalletSpec,
    answer_sam_enrolment,
    enrol_sam,
    personalise_card,
    sams,
    set_sam_status,
)
from registry.purse.issuer import IssuerKeys
from registry.purse.purses import PurseError, chip_wallet, purse_by_id
from registry.purse.records import Item, ingest
from registry.purse_models import PurseSam as SamRow
from registry.service_desk_ask import Refused

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
T = int(NOW.replace(tzinfo=dt.UTC).timestamp())
PAN, OTHER_PAN, PIN = "7077001000000019", "7077001000000027", "1234"
SAM_A, SAM_B = bytes.fromhex("5341000000000001"), bytes.fromhex("5341000000000002")
OK = 0x9000


@dataclass
class Reg:
    url: str
    state: Path
    sm: sessionmaker[Session]
    keys: RegistryKeys
    money: int            # registry wallets shadowing the chip wallets: money (cents) and litres (cl)
    litres: int
    foreign: int          # a wallet of another account

    def issuer(self, s: Session) -> IssuerKeys:
        return IssuerKeys.load(s, self.keys, now=NOW)

    def specs(self) -> list[WalletSpec]:
        return [WalletSpec(0, self.litres, ((19, 19),), day_limit=15_000),
                WalletSpec(1, self.money, ((1, 99),))]


def _card(s: Session, keys: RegistryKeys, pan: str, account: int) -> Card:
    token = keys.token(pan)
    card = Card(token=token, masked=pan[:6] + "******" + pan[-4:], account_id=account, expiry="2912",
                pin_verifier=keys.pin_verifier(token, PIN), status="active", status_changed_at=NOW)
    s.add(card)
    return card


@pytest.fixture
def reg(tmp_path: Path) -> Reg:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    _, sm = open_database(url)
    keys = load_or_create_keys(tmp_path / "registry-keys.json")
    with sm() as s:
        s.add(Station(id="ST-001", name="Main street"))
        s.flush()
        for tid in ("T-0001", "T-0002"):
            s.add(Device(id=tid, station_id="ST-001", pin_key_hex="00" * 16, status="active"))
        customer = Customer(name="Acme", kind="company", created_at=NOW)
        s.add(customer)
        s.flush()
        accounts = [Account(name=n, customer_id=customer.id) for n in ("fleet", "other")]
        s.add_all(accounts)
        s.flush()
        made = [Wallet(account_id=accounts[0].id, allowed_products="", unit="money", name="chip money"),
                Wallet(account_id=accounts[0].id, allowed_products="019", unit="volume", name="chip litres"),
                Wallet(account_id=accounts[1].id, allowed_products="", unit="money", name="not theirs")]
        s.add_all(made)
        s.flush()
        ledger.topup(s, made[0], 5_000, key="seed:money", at=NOW, actor="test")
        ledger.topup(s, made[1], 20_000, key="seed:litres", at=NOW, actor="test")
        _card(s, keys, PAN, accounts[0].id)
        _card(s, keys, OTHER_PAN, accounts[0].id)
        IssuerKeys.load(s, keys, now=NOW)
        s.commit()
        return Reg(url, tmp_path, sm, keys, made[0].id, made[1].id, made[2].id)


def ok(link: PurseSam | PurseCard, command: bytes) -> bytes:
    data, sw = sa.split_answer(link.apdu(command))
    assert sw == OK, f"{sw:04X}"
    return data


def authenticate(sam: PurseSam, card: PurseCard, pin: str = PIN) -> bytes:
    """The terminal between SAM and card: SELECT both, the four messages, the enciphered PIN; the card id."""
    ok(sam, sa.select())
    ok(card, apdu.select().to_bytes())
    answer = ok(card, apdu.mutual_authenticate(1, ok(sam, sa.auth_hello(T))).to_bytes())
    proof, card_id = sa.parse_proof(ok(sam, sa.auth_proof(answer)))
    ok(sam, sa.auth_confirm(ok(card, apdu.mutual_authenticate(2, proof).to_bytes())))
    _, sw = sa.parse_unwrapped(ok(sam, sa.unwrap(card.apdu(ok(sam, sa.encipher_pin(pin))))))
    assert sw == OK
    return card_id


def secure(sam: PurseSam, card: PurseCard, command: apdu.Command) -> bytes:
    wrapped = ok(sam, sa.wrap(command.cla, command.ins, command.p1, command.p2, command.data))
    data, sw = sa.parse_unwrapped(ok(sam, sa.unwrap(card.apdu(wrapped))))
    assert sw == OK, f"{sw:04X}"
    return data


def purchase(sam: PurseSam, card: PurseCard, amount: int, *, wallet: int = 0) -> tuple[bytes, int, bytes]:
    """A whole offline sale: (the card's signed record, the SAM's sequence, the SAM's MAC)."""
    authenticate(sam, card)
    reserved = apdu.ReserveAnswer.decode(secure(sam, card, apdu.reserve(
        apdu.ReserveRequest(wallet, 19, amount, T, os.urandom(16)))))
    signed = secure(sam, card, apdu.settle(apdu.SettleRequest(reserved.counter, amount)))
    seq, tag = sa.parse_record_mac(ok(sam, sa.mac_record(signed)))
    return signed, seq, tag


def record(reg: Reg, signed: bytes) -> PurchaseRecord:
    with reg.sm() as s:
        entry = LogEntry.decode(signed)
        return entry.verified(reg.issuer(s).card_key(entry.record.card_id, Purpose.RECORD, 1))


def fitted(reg: Reg, sam_id: bytes = SAM_A, terminal: str = "T-0001") -> PurseSam:
    sam = PurseSam(sam_id)
    fit_sam(reg.url, reg.state, terminal, sam, now=NOW)
    return sam


def test_a_sam_enrolled_end_to_end_macs_what_the_issuer_checks(reg: Reg) -> None:
    sam = fitted(reg)
    assert sa.parse_fci(ok(sam, sa.select())) == sa.SamInfo(SAM_A, sa.SamState.PERSONALIZED, 1)
    card = issue_purse_card(reg.url, reg.state, pan=PAN, wallets=reg.specs(), pin=PIN, now=NOW)
    assert authenticate(sam, card) == card.state.keys.card_id
    signed, seq, tag = purchase(sam, card, 4_250)
    with reg.sm() as s:
        issuer = reg.issuer(s)
        assert seq == 1 and sa.verify_sam_record_mac(issuer.sam_key(SAM_A, 1), signed, seq, tag)
        assert not sa.verify_sam_record_mac(issuer.sam_key(SAM_B, 1), signed, seq, tag)
        row = s.get(SamRow, SAM_A.hex())
        assert row is not None and (row.terminal, row.key_version, row.status) == ("T-0001", 1, "active")
        audit = list(s.scalars(select(AuditEntry).where(AuditEntry.subject == f"sam:{SAM_A.hex()}")))
        assert [a.action for a in audit] == ["purse_sam_enrolled"]
    got = record(reg, signed)
    assert (got.kind, got.amount, got.terminal, got.previous_balance) == (Kind.PURCHASE, 4_250, SAM_A, 20_000)
    with reg.sm() as s:                            # the registry counts it: signature, SAM MAC, shadow agree
        report = ingest(s, reg.issuer(s), [Item(signed, SAM_A, seq, tag)], source="mqtt:T-0001", now=NOW)
        s.commit()
        assert report.counted == 1 and not report.flags
        purse = purse_by_id(s, got.card_id)
        assert purse is not None
        shadow = chip_wallet(s, purse, 0)
        assert shadow is not None and shadow.balance == 20_000 - 4_250


def test_the_sealed_key_opens_only_in_its_sam(reg: Reg) -> None:
    a, b = PurseSam(SAM_A), PurseSam(SAM_B)
    publics = {}
    for sam in (a, b):
        ok(sam, sa.select())
        publics[sam.sam_id] = ok(sam, sa.generate_key_pair())
    with reg.sm() as s:
        issuer = reg.issuer(s)
        got = {sam.sam_id: enrol_sam(s, issuer, terminal=t, sam_id=sam.sam_id, now=NOW,
                                     sam_public_key=publics[sam.sam_id])
               for sam, t in ((a, "T-0001"), (b, "T-0002"))}
        key_a = issuer.sam_key(SAM_A, 1)
        s.commit()
    ea, eb = got[SAM_A], got[SAM_B]
    cert = open_certificate(load_public_key(ea.ca_public_key), ea.certificate, role=Role.SAM, now=T)
    assert (cert.id, cert.public_key) == (SAM_A, publics[SAM_A])
    assert T + 5 * 365 * 86_400 <= ea.expiry == cert.expiry <= T + 5 * 366 * 86_400
    for name, value in ea.answer().items():           # nothing secret in the answer or a repr
        assert key_a.hex() not in str(value) and key_a.hex() not in repr(ea), name
    assert key_a not in ea.sam_key_sealed
    for sam, e in ((a, ea), (b, eb)):
        ok(sam, sa.put_certificate(e.certificate, e.ca_public_key))
    assert b.apdu(sa.put_sam_key(1, ea.sam_key_sealed)) == b"\x6a\x80"          # A's box in SAM B: no
    assert a.apdu(sa.put_sam_key(2, ea.sam_key_sealed)) == b"\x6a\x80"          # another version: no
    with pytest.raises(SealError):                                              # nor anywhere else
        open_sealed(ec.generate_private_key(ec.SECP256R1()), ea.sam_key_sealed,
                    context=sam_key_context(SAM_A, 1))
    ok(a, sa.put_sam_key(1, ea.sam_key_sealed))
    assert a.info().state is sa.SamState.PERSONALIZED and b.info().state is sa.SamState.CERTIFIED


def test_enrolling_the_same_sam_again_is_idempotent(reg: Reg) -> None:
    sam = fitted(reg)
    again = fit_sam(reg.url, reg.state, "T-0001", sam, now=NOW + dt.timedelta(days=1))
    assert (again.changed, again.key_version, again.sam_id) == (False, 1, SAM_A)
    with reg.sm() as s:
        assert [(r.sam_id, r.terminal, r.status) for r in sams(s)] == [(SAM_A.hex(), "T-0001", "active")]
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.subject == f"sam:{SAM_A.hex()}")) \
            == "purse_sam_enrolled"
        assert len(list(s.scalars(select(AuditEntry).where(AuditEntry.subject == f"sam:{SAM_A.hex()}")))) == 1


def test_another_terminal_claiming_a_fitted_sam_is_refused(reg: Reg) -> None:
    sam = fitted(reg)
    ok(sam, sa.select())
    public = ok(sam, sa.auth_hello(T))[15:48]                  # the key in the SAM's certificate
    with reg.sm() as s:
        with pytest.raises(EnrolmentRefused) as refused:
            enrol_sam(s, reg.issuer(s), terminal="T-0002", sam_id=SAM_A, sam_public_key=public, now=NOW)
        assert refused.value.reason == SAM_TAKEN
        req = {"request_id": str(uuid.uuid4()), "terminal": "T-0002", "station": "ST-001", "op": "sam_enrol",
               "sam_id": SAM_A.hex(), "sam_public_key": public.hex()}
        with pytest.raises(Refused) as answered:
            answer_sam_enrolment(s, reg.issuer(s), req, NOW)
        assert answered.value.reason == SAM_TAKEN
        with pytest.raises(Refused):
            answer_sam_enrolment(s, reg.issuer(s), {**req, "terminal": "T-0001", "sam_id": "zz"}, NOW)
        s.rollback()
        # an operator releases it: then the other terminal may have it, and the first one's row follows
        set_sam_status(s, SAM_A, REPLACED, actor="ops", now=NOW, reason="moved to pump 2")
        result = answer_sam_enrolment(s, reg.issuer(s), req, NOW)
        assert result["sam_id"] == SAM_A.hex() and result["key_version"] == 1
        row = s.get(SamRow, SAM_A.hex())
        assert row is not None and (row.terminal, row.status) == ("T-0002", "active")
        set_sam_status(s, SAM_A, "revoked", actor="ops", now=NOW, reason="lost")
        with pytest.raises(EnrolmentRefused):           # a revoked SAM comes back only on purpose
            enrol_sam(s, reg.issuer(s), terminal="T-0002", sam_id=SAM_A, sam_public_key=public, now=NOW)
        enrol_sam(s, reg.issuer(s), terminal="T-0001", sam_id=SAM_A, sam_public_key=public, now=NOW,
                  replace=True)
        with pytest.raises(EnrolmentRefused) as unknown:
            enrol_sam(s, reg.issuer(s), terminal="T-9999", sam_id=SAM_B, sam_public_key=public, now=NOW)
        assert unknown.value.reason == "unknown_terminal"


def test_a_new_sam_replaces_the_terminals_old_one_and_rotation_rekeys(reg: Reg) -> None:
    fitted(reg)
    new = fitted(reg, SAM_B)
    with reg.sm() as s:
        assert [(r.sam_id, r.status) for r in sams(s, "T-0001")] == [(SAM_A.hex(), REPLACED),
                                                                      (SAM_B.hex(), "active")]
        assert reg.issuer(s).rotate(s, Purpose.SAM, now=NOW) == 2
        s.commit()
    again = fit_sam(reg.url, reg.state, "T-0001", new, now=NOW)
    assert again.changed and again.key_version == 2 and new.info().key_version == 2
    card = issue_purse_card(reg.url, reg.state, pan=PAN, wallets=reg.specs(), pin=PIN, now=NOW)
    signed, seq, tag = purchase(new, card, 1_000)
    with reg.sm() as s:
        assert sa.verify_sam_record_mac(reg.issuer(s).sam_key(SAM_B, 2), signed, seq, tag)
        row = s.get(SamRow, SAM_B.hex())
        assert row is not None and row.key_version == 2


def test_the_bureau_personalises_a_card_the_registry_knows(reg: Reg) -> None:
    card = issue_purse_card(reg.url, reg.state, pan=PAN, wallets=reg.specs(), pin=PIN, now=NOW)
    purse_id = card.state.keys.card_id
    versions = card.state.keys.versions()
    assert (versions.auth, versions.record, versions.load, versions.admin) == (1, 1, 1, 1)
    with reg.sm() as s:
        purse = purse_by_id(s, purse_id)
        assert purse is not None and purse.chip_status == "active"
        for number, wallet_id in ((0, reg.litres), (1, reg.money)):
            shadow = chip_wallet(s, purse, number)
            assert shadow is not None and shadow.id == wallet_id
        issuer = reg.issuer(s)
        for purpose in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN):
            assert card.state.keys.key(purpose, 1) == issuer.card_key(purse_id, purpose, 1)
        assert card.state.keys.key(Purpose.RECORD, 2) is None
    wallets = {w.number: w for w in card.state.stored.wallets}
    assert (wallets[0].unit, wallets[0].balance, wallets[0].products, wallets[0].day_limit) == (
        Unit.VOLUME, 20_000, ((19, 19),), 15_000)
    assert (wallets[1].unit, wallets[1].balance, wallets[1].expiry) == (Unit.MONEY, 5_000, 20291231)
    sam = fitted(reg)
    signed, _, _ = purchase(sam, card, 2_000)
    assert record(reg, signed).new_balance == 18_000
    with pytest.raises(PurseError):                   # each shadow wallet serves one purse
        issue_purse_card(reg.url, reg.state, pan=OTHER_PAN, wallets=reg.specs(), pin=PIN, now=NOW)
    with reg.sm() as s:                               # one purse per card
        with pytest.raises(EnrolmentRefused) as refused:
            personalise_card(s, reg.issuer(s), card_id=purse.card_id, wallets=[], card_public_key=bytes(33),
                             now=NOW)
        assert refused.value.reason == "has_purse"


def test_the_bureau_refuses_what_does_not_fit(reg: Reg) -> None:
    from contracts.errors import ConfigError

    with pytest.raises(ConfigError):
        issue_purse_card(reg.url, reg.state, pan=PAN, wallets=reg.specs(), pin="9999", now=NOW)  # not its PIN
    with pytest.raises(ConfigError):
        issue_purse_card(reg.url, reg.state, pan="7077009999999999", wallets=reg.specs(), pin=PIN, now=NOW)
    public = PurseSam(SAM_A)
    ok(public, sa.select())
    key = ok(public, sa.generate_key_pair())
    with reg.sm() as s:
        issuer = reg.issuer(s)
        card_id = s.scalar(select(Card.id).where(Card.token == reg.keys.token(PAN)))
        assert card_id is not None
        bad = [[WalletSpec(0, reg.foreign, ((1, 1),))],                       # another account's wallet
               [WalletSpec(0, reg.money, ((1, 1),)), WalletSpec(0, reg.litres, ((19, 19),))],   # twice 0
               [WalletSpec(8, reg.money, ((1, 1),))],                          # no wallet 8
               []]
        for specs in bad:
            with pytest.raises(PurseError):
                personalise_card(s, issuer, card_id=card_id, wallets=specs, card_public_key=key, now=NOW)
            s.rollback()
        with pytest.raises(EnrolmentRefused):
            personalise_card(s, issuer, card_id=card_id, wallets=reg.specs(), card_public_key=bytes(33),
                             now=NOW)
        package = personalise_card(s, issuer, card_id=card_id, wallets=reg.specs(), card_public_key=key,
                                   now=NOW)
        assert all(k.hex() not in repr(package) for k in package.keys.values())
        assert json.dumps(sorted(v for _, v in package.keys)) == "[1, 1, 1, 1]"
