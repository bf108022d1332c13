"""EMV contact kernel (EMV 4.4 Books 1-4) behind the transmit(apdu) -> bytes seam."""

from firmware.emv.action import Cryptogram
from firmware.emv.config import AidConfig, EmvConfig, load_emv_config
from firmware.emv.cvm import PinEntry, PinInput, PlainPinBlockSource
from firmware.emv.data import DataStore, TsiBit, TvrBit
from firmware.emv.issuer import IssuerResponse
from firmware.emv.kernel import EmvFinal, EmvResult, complete, run_transaction
from firmware.emv.language import choose_language
from firmware.emv.select import Candidate, CandidateList, select_ppse

__all__ = [
    "AidConfig",
    "Candidate",
    "CandidateList",
    "Cryptogram",
    "DataStore",
    "EmvConfig",
    "EmvFinal",
    "EmvResult",
    "IssuerResponse",
    "PinEntry",
    "PinInput",
    "PlainPinBlockSource",
    "TsiBit",
    "TvrBit",
    "choose_language",
    "complete",
    "load_emv_config",
    "run_transaction",
    "select_ppse",
]
