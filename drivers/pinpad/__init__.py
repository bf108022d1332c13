"""PIN pad: collects PIN digits and hands out only an encrypted ISO 9564 format 4 PIN block."""

from drivers.pinpad.pinpad import PinEntryCancelled, PinPad, load_pin_key

__all__ = ["PinEntryCancelled", "PinPad", "load_pin_key"]
