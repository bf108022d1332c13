"""Card readers: one interface, picked by URL (`pcsc://<reader name>`, `memory://`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from contracts.errors import MessageError

__all__ = ["CardReader", "MemoryReader", "PcscReader", "complete_response", "open_reader"]

_MAX_CHAINED_RESPONSES = 64


@runtime_checkable
class CardReader(Protocol):
    """A contact card reader: presence, power/ATR and APDU exchange."""

    def card_present(self) -> bool: ...
    def wait_for_card(self, timeout: float) -> bool: ...
    def wait_for_removal(self, timeout: float) -> bool: ...
    def connect(self) -> bytes: ...
    def transmit(self, apdu: bytes) -> bytes: ...
    def disconnect(self) -> None: ...


def complete_response(send: Callable[[bytes], bytes], apdu: bytes) -> bytes:
    """Send an APDU, following 61xx with GET RESPONSE and re-issuing on 6Cxx (ISO/IEC 7816-4 5.3.4).

    Returns the whole response data followed by the final SW1 SW2.
    """
    response = send(apdu)
    if len(response) < 2:
        raise MessageError("R-APDU shorter than a status word", header=apdu[:4].hex(), length=len(response))
    if response[-2] == 0x6C and len(apdu) >= 5:
        apdu = apdu[:-1] + bytes([response[-1]]) if len(apdu) > 5 else apdu[:4] + bytes([response[-1]])
        response = send(apdu)
    data = bytearray()
    for _ in range(_MAX_CHAINED_RESPONSES):
        if len(response) < 2:
            raise MessageError("R-APDU shorter than a status word", header=apdu[:4].hex(),
                               length=len(response))
        if response[-2] != 0x61:
            return bytes(data) + response
        data += response[:-2]
        response = send(bytes([apdu[0] & 0x03, 0xC0, 0x00, 0x00, response[-1]]))  # GET RESPONSE
    raise MessageError("card kept answering 61xx", header=apdu[:4].hex())


def open_reader(url: str) -> CardReader:
    """`pcsc://Forecourt%20Virtual%20PCD%2000%2000` or `pcsc://Forecourt Virtual PCD 00 00`, `memory://`."""
    from drivers.devices import open_device

    reader: CardReader = open_device("card_reader", url)
    return reader


# Imported last: both backends use complete_response from this module.
from drivers.cardreader.memory import MemoryReader
from drivers.cardreader.pcsc import PcscReader
