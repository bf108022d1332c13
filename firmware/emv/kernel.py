"""EMV contact kernel: run_transaction() up to the first GENERATE AC, complete() after the host answers.

Flow per EMV 4.4 Book 3 section 9/10: application selection (Book 1 12), initiate application processing,
read application data, offline data authentication, processing restrictions, cardholder verification,
terminal risk management, terminal action analysis, first GENERATE AC and card action analysis; then
online processing, issuer-to-card script processing and completion (second GENERATE AC).
The card is anything with transmit(apdu) -> data + SW1 SW2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from contracts.cards import luhn_ok, mask_pan
from contracts.errors import CardError, CardNotAccepted, CardRemoved
from firmware import tlv
from firmware.emv.action import Cryptogram, after_online, card_action, default_action, terminal_action
from firmware.emv.apdu import Transmitter
from firmware.emv.config import AidConfig, EmvConfig
from firmware.emv.cvm import PinEntry, perform_cvm
from firmware.emv.data import DataStore, TsiBit, build_dol, parse_dol, unpredictable_number
from firmware.emv.genac import AcResponse, request_ac
from firmware.emv.issuer import IssuerResponse, authenticate_issuer, run_scripts
from firmware.emv.oda import OdaState, perform_oda, pin_encipherment_key, verify_cda
from firmware.emv.records import ConditionsNotSatisfied, ProcessingOptions, initiate, read_application_data
from firmware.emv.restrictions import process_restrictions
from firmware.emv.risk import terminal_risk_management
from firmware.emv.select import Candidate, CandidateList, SelectedApp, build_candidate_list, final_select

__all__ = ["ICC_DATA_TAGS", "EmvFinal", "EmvResult", "complete", "run_transaction"]

Decision = Literal["online", "approved", "declined"]
Chooser = Callable[[CandidateList], "Candidate | None"]

# ISO 8583 field 55 content, in this order when present (Book 4 Annex; acquirer specifications).
ICC_DATA_TAGS = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A,
                 0x9F34, 0x9F33, 0x9F35, 0x84, 0x9F09, 0x9F03, 0x9F1E, 0x9F41, 0x9F5B)


@dataclass
class _Session:
    reader: Transmitter
    config: EmvConfig
    aid: AidConfig
    store: DataStore
    options: ProcessingOptions
    oda: OdaState
    cdol1_data: bytes
    final: EmvFinal | None = None


@dataclass(frozen=True)
class EmvFinal:
    approved: bool
    cryptogram: Cryptogram
    arc: bytes                       # 8A as sent to the card (host's, or Y3/Z3 when unable to go online)
    icc_data: bytes                  # field 55 after the final GENERATE AC
    tvr: bytes
    tsi: bytes
    script_results: bytes            # 9F5B, 5 bytes per script
    issuer_authenticated: bool | None = None


@dataclass(repr=False)
class EmvResult:
    """Everything the authorisation request needs. PAN and track 2 stay out of repr and logs."""

    aid: bytes
    app_label: str
    preferred_name: str
    language: str                    # 5F2D as on the card, e.g. "deen"; see language.choose_language
    pan: str
    pan_sequence: str | None
    expiry: str                      # YYMM
    track2_equivalent: bytes | None
    cvm_results: bytes
    online_pin_block: bytes | None
    tvr: bytes
    tsi: bytes
    requested: Cryptogram
    cryptogram: Cryptogram
    decision: Decision
    icc_data: bytes
    oda_method: str
    _session: _Session = field(compare=False)

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return (f"EmvResult(aid={self.aid.hex().upper()}, pan={self.masked_pan}, decision={self.decision}, "
                f"cryptogram={self.cryptogram.name}, tvr={self.tvr.hex().upper()}, "
                f"cvm={self.cvm_results.hex().upper()})")


def _not_removed(exc: CardError) -> None:
    if isinstance(exc, CardRemoved):
        raise exc


def _terminal_store(config: EmvConfig, aid: AidConfig, app: SelectedApp, amount: int, amount_other: int,
                    now: dt.datetime, sequence: int | None) -> DataStore:
    store = DataStore()
    for tag, value in app.fci_objects.items():
        if not tlv.is_constructed(tag):
            store.set(tag, value)
    for tag, value in {
        0x9F35: bytes([config.terminal_type]), 0x9F33: config.capabilities,
        0x9F40: config.additional_capabilities, 0x9F1A: config.country_code, 0x5F2A: config.currency_code,
        0x5F36: bytes.fromhex(f"{config.currency_exponent:02d}"), 0x9F15: config.merchant_category,
        0x9F1C: config.terminal_id, 0x9F16: config.merchant_id, 0x9F1E: config.ifd_serial,
        0x9F09: aid.app_version, 0x9F1B: aid.floor_limit.to_bytes(4, "big"),
        0x9A: bytes.fromhex(now.strftime("%y%m%d")), 0x9F21: bytes.fromhex(now.strftime("%H%M%S")),
        0x9C: bytes([config.transaction_type]), 0x9F02: bytes.fromhex(f"{amount:012d}"),
        0x9F03: bytes.fromhex(f"{amount_other:012d}"), 0x81: amount.to_bytes(4, "big"),
        0x9F37: unpredictable_number(), 0x9F39: b"\x05", 0x9F06: app.aid,
    }.items():
        store.set(tag, value)
    if sequence is not None:
        store.set(0x9F41, bytes.fromhex(f"{sequence % 10**8:08d}"))
    return store


def _select_and_initiate(reader: Transmitter, config: EmvConfig, amount: int, amount_other: int,
                         now: dt.datetime, choose: Chooser | None, sequence: int | None,
                         on_select: Callable[[SelectedApp], None] | None,
                         ) -> tuple[SelectedApp, AidConfig, DataStore, ProcessingOptions]:
    """Book 1 12.4 and Book 3 10.1: pick, final-select and GPO; a refusal drops the candidate."""
    listed = build_candidate_list(reader, config.aids)
    remaining = list(listed.candidates)
    while remaining:
        current = CandidateList(tuple(remaining), remaining[0].needs_confirmation)
        if choose is not None and (current.confirmation_needed or len(remaining) > 1):
            picked = choose(current)
            if picked is None:
                raise CardNotAccepted("cardholder declined every application")
        else:
            usable = [c for c in remaining if not c.needs_confirmation or choose is not None]
            if not usable:
                break
            picked = usable[0]
        remaining = [c for c in remaining if c is not picked]
        try:
            app = final_select(reader, picked.aid)
        except CardError as exc:
            _not_removed(exc)
            continue
        aid = config.aid_config(app.aid)
        if aid is None:
            continue
        if on_select is not None:
            on_select(app)          # e.g. the screen language from 5F2D, before any cardholder prompt
        store = _terminal_store(config, aid, app, amount, amount_other, now, sequence)
        try:
            return app, aid, store, initiate(reader, store, app.pdol)
        except ConditionsNotSatisfied:
            continue
    raise CardNotAccepted("no candidate application could be started")


def _icc_data(store: DataStore) -> bytes:
    return b"".join(tlv.encode(t, v) for t in ICC_DATA_TAGS if (v := store.get(t)) is not None)


def _pan(store: DataStore) -> str:
    digits = (store.get(0x5A) or b"").hex().upper().rstrip("F")
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        raise CardError("card number 5A is malformed", length=len(store.get(0x5A) or b""))
    return digits


def _cda_check(s: _Session, answer: AcResponse, answered: Cryptogram, dol_data: bytes) -> bool:
    """Book 2 6.6.2: a TC or ARQC under CDA must carry a valid signature; an AAC is not signed."""
    if answered == Cryptogram.AAC and answer.ac is not None:
        return True
    ac = verify_cda(s.store, s.oda, answer.objects, dol_data)
    if ac is None:
        return False
    s.store.set(0x9F26, ac)
    return True


def run_transaction(reader: Transmitter, config: EmvConfig, amount_cents: int, *, pin_entry: PinEntry,
                    online: bool, choose: Chooser | None = None, now: dt.datetime | None = None,
                    amount_other: int = 0, sequence: int | None = None,
                    random_percent: Callable[[], int] | None = None,
                    on_select: Callable[[SelectedApp], None] | None = None) -> EmvResult:
    """Run the card up to the first GENERATE AC. CardError (or a subclass) ends the transaction."""
    if amount_cents < 0 or amount_cents >= 10**12:
        raise ValueError("amount out of range")
    now = now or dt.datetime.now()
    app, aid, store, options = _select_and_initiate(reader, config, amount_cents, amount_other, now,
                                                    choose, sequence, on_select)
    oda_records = read_application_data(reader, store, options.afl)
    pan = _pan(store)
    psn = store.get(0x5F34)
    if psn is not None and (len(psn) != 1 or not psn.hex().isdigit()):    # n2 (Book 3 Annex A)
        raise CardError("PAN sequence number 5F34 is malformed", length=len(psn))
    oda = perform_oda(reader, store, config.ca_keys, app.aid, oda_records, config.capabilities,
                      aid.default_ddol, now.date())
    process_restrictions(store, config.terminal_type, config.additional_capabilities,
                         services=config.services, today=now.date())
    cvm = perform_cvm(reader, store, amount_cents, pin_entry, config.capabilities, config.terminal_type,
                      lambda: pin_encipherment_key(store, oda, config.ca_keys, app.aid, now.date()))
    trm_kwargs = {"rng": random_percent} if random_percent is not None else {}
    terminal_risk_management(reader, store, amount_cents, aid, regardless_of_aip=config.trm_regardless_of_aip,
                             velocity=config.velocity_checking, **trm_kwargs)
    requested = terminal_action(store, aid, can_go_online=online)
    cda = oda.cda_ready and requested != Cryptogram.AAC
    cdol1_data = build_dol(store.get(0x8C) or b"", store)
    answer = request_ac(reader, store, requested, cdol1_data, cda=cda, step="generate_ac_1")
    answered = card_action(answer.cid, requested)
    store.tsi.set(TsiBit.CARD_RISK_MANAGEMENT_PERFORMED)     # Book 3 10.8
    session = _Session(reader, config, aid, store, options, oda, cdol1_data)
    decisions: dict[Cryptogram, Decision] = {Cryptogram.AAC: "declined", Cryptogram.TC: "approved",
                                             Cryptogram.ARQC: "online"}
    decision = decisions[answered]
    if cda and not _cda_check(session, answer, answered, options.pdol_data + cdol1_data):
        decision = "declined"
        if answered == Cryptogram.ARQC:     # Book 2 6.6.2: close the card session with an AAC
            store.set(0x8A, b"Z1")
            request_ac(reader, store, Cryptogram.AAC, build_dol(store.get(0x8D) or b"", store),
                       cda=False, step="generate_ac_2")
    psn = store.get(0x5F34)
    track2 = store.get(0x57)
    store.forget(0x57)
    return EmvResult(
        aid=app.aid, app_label=app.label, preferred_name=app.preferred_name, language=app.language,
        pan=pan, pan_sequence=psn.hex() if psn else None, expiry=(store.get(0x5F24) or b"").hex()[:4],
        track2_equivalent=track2, cvm_results=cvm.results, online_pin_block=cvm.online_pin_block,
        tvr=bytes(store.tvr), tsi=bytes(store.tsi), requested=requested, cryptogram=answered,
        decision=decision, icc_data=_icc_data(store), oda_method=oda.method, _session=session)


def complete(result: EmvResult, issuer_response: IssuerResponse) -> EmvFinal:
    """After the host answered an ARQC (or could not be reached: arc None): issuer authentication,
    71 scripts, second GENERATE AC, 72 scripts. For an offline decision, returns it without card I/O."""
    s = result._session
    if s.final is not None:
        return s.final
    store = s.store
    if result.decision != "online":
        s.final = EmvFinal(result.decision == "approved", result.cryptogram, b"", result.icc_data,
                           result.tvr, result.tsi, b"")
        return s.final
    cdol2 = store.get(0x8D) or b""
    scripts: list[bytes] = []
    authenticated: bool | None = None
    if issuer_response.arc is None:              # unable to go online: default action (Book 3 10.7)
        kind = default_action(store, s.aid)
        arc = b"Y3" if kind == Cryptogram.TC else b"Z3"
    else:
        arc = issuer_response.arc
        auth = issuer_response.auth_data
        aip = store.get(0x82) or b"\x00\x00"
        if auth:
            # Book 3 10.9: a card that asks for 91 in CDOL2 checks the ARPC in the second GENERATE AC,
            # whatever its AIP says (M/Chip cards, AIP 38xx/39xx); otherwise EXTERNAL AUTHENTICATE when
            # the AIP (byte 1 bit 3) says the card supports issuer authentication.
            store.set(0x91, auth)
            if aip[0] & 0x04 and not any(tag == 0x91 for tag, _ in parse_dol(cdol2)):
                authenticated = authenticate_issuer(s.reader, store, auth)
        scripts += run_scripts(s.reader, store, issuer_response.scripts, final=False)
        kind = after_online(arc, s.config.approved_codes)
    store.set(0x8A, arc)
    cdol2_data = build_dol(cdol2, store)
    cda = s.oda.cda_ready and kind == Cryptogram.TC
    answer = request_ac(s.reader, store, kind, cdol2_data, cda=cda, step="generate_ac_2")
    answered = card_action(answer.cid, kind, second=True)
    approved = answered == Cryptogram.TC
    if cda and not _cda_check(s, answer, answered, s.options.pdol_data + s.cdol1_data + cdol2_data):
        approved = False
    if issuer_response.arc is not None:
        scripts += run_scripts(s.reader, store, issuer_response.scripts, final=True)
    if scripts:
        store.set(0x9F5B, b"".join(scripts))
    s.final = EmvFinal(approved, answered, arc, _icc_data(store), bytes(store.tvr), bytes(store.tsi),
                       b"".join(scripts), authenticated)
    return s.final
