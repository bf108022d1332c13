"""PIN pad: collects PIN digits and hands out only an encrypted ISO 9564 PIN block (format 4, or format 0
under a DUKPT 2TDEA key for a bank acquirer that takes the ISO 8583:1987 field 52)."""

from drivers.pinpad.pinpad import PinEntryCancelled, PinPad, load_pin_key

__all__ = ["PinEntryCancelled", "PinPad", "load_pin_key"]
