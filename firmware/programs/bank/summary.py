"""The bank sale as the journal, the receipt and the scenario report see it: no PAN, no track, no PIN."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from firmware.acquirer import messages as iso
from firmware.emv import EmvFinal, EmvResult

__all__ = ["CHIP", "BankSummary", "cvm_text", "entry_text", "summary"]

CHIP = "051"      # ISO 8583:1987 field 22: ICC read, PIN entry capability


def entry_text(mode: str) -> str:
    return {"051": "Chip", "801": "Magstripe fallback", "901": "Magstripe"}.get(mode, mode)


def cvm_text(results: str) -> str:
    """9F34 in words (Book 3 Annex C1/C3): method and result."""
    if results == "online_pin":          # a swiped card: the PIN went to the acquirer
        return "Online PIN"
    if len(results) != 6 or any(c not in "0123456789abcdefABCDEF" for c in results):
        return "-"
    method, outcome = int(results[:2], 16) & 0x3F, results[4:]
    name = {0x01: "PIN verified by card", 0x02: "PIN verified online", 0x04: "PIN verified by card",
            0x1F: "No CVM", 0x3F: "No CVM performed"}.get(method, f"CVM {method:02X}")
    return name + (" (failed)" if outcome == "01" else "")


@dataclass(frozen=True)
class BankSummary:
    """What the journal, the receipt and the scenario report keep of one bank sale: AID, label, CVM,
    TVR/TSI, cryptogram and ARC, response and auth codes. Never a PAN, a track or a PIN."""

    entry_mode: str = ""
    preauth_cents: int = 0
    cvm_results: str = "online_pin"      # 9F34 hex; a swiped card's PIN went to the acquirer
    aid: str | None = None
    app_label: str | None = None
    oda: str | None = None
    cryptogram: str | None = None
    tvr: str | None = None
    tsi: str | None = None
    language: str | None = None
    arc: str | None = None
    issuer_authenticated: bool | None = None
    response_code: str | None = None
    auth_code: str | None = None
    rrn: str | None = None
    approved_cents: int | None = None
    partial: bool | None = None

    def to_doc(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> BankSummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def summary(result: EmvResult | None, final: EmvFinal | None, answer: iso.PreauthResult | None, *,
            entry_mode: str, preauth_cents: int) -> BankSummary:
    """The summary of a bank sale from the kernel's results and the acquirer's answer so far."""
    out: dict[str, Any] = {"entry_mode": entry_mode, "preauth_cents": preauth_cents}
    if result is not None:
        out.update(aid=result.aid.hex().upper(), app_label=result.app_label or result.preferred_name,
                   cvm_results=result.cvm_results.hex().upper(), oda=result.oda_method,
                   cryptogram=result.cryptogram.name, tvr=result.tvr.hex().upper(),
                   tsi=result.tsi.hex().upper(), language=result.language)
    if final is not None:
        out.update(tvr=final.tvr.hex().upper(), tsi=final.tsi.hex().upper(),
                   arc=final.arc.decode("ascii", "replace"), cryptogram=final.cryptogram.name,
                   issuer_authenticated=final.issuer_authenticated)
    if answer is not None:
        out.update(response_code=answer.response_code, auth_code=answer.auth_code, rrn=answer.rrn,
                   approved_cents=answer.approved_amount, partial=answer.partial)
    return BankSummary(**out)
