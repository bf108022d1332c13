"""Decode the ESC/POS bytes a receipt printer receives back into text, as the paper would show it.

Commands per the Epson ESC/POS reference: ESC @ init, ESC E n bold, ESC a n align, ESC t n code
page, ESC ! n print mode, GS ! n size, ESC d n feed, GS V m [n] cut, LF.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from contracts.errors import MessageError

__all__ = ["Paper", "decode_escpos"]

# command prefix -> number of argument bytes
_ARGS = {b"\x1b@": 0, b"\x1bE": 1, b"\x1ba": 1, b"\x1bt": 1, b"\x1b!": 1, b"\x1d!": 1, b"\x1bd": 1,
         b"\x1bJ": 1, b"\x1b-": 1, b"\x1bM": 1, b"\x1dB": 1, b"\x1b2": 0, b"\x1b3": 1, b"\x1bG": 1}


@dataclass
class Paper:
    receipts: list[list[str]] = field(default_factory=list)
    current: list[str] = field(default_factory=list)

    def text(self) -> str:
        done = ["\n".join(r) for r in self.receipts]
        if self.current:
            done.append("\n".join(self.current))
        return "\n\n".join(done)


def _codec(number: int) -> str:
    """Python codec of ESC t code page `number`, per the printer profile python-escpos encodes with."""
    from escpos.capabilities import get_profile  # type: ignore[import-untyped]

    name = get_profile("default").codePages.get(str(number), "Unknown")
    try:
        codec = codecs.lookup(name.replace("_", "-")).name
    except LookupError as exc:
        raise MessageError("unsupported code page", page=number) from exc
    try:   # a multi-byte page holds a lead byte back; a single-byte page decodes it or has no 0x81
        held = codecs.getincrementaldecoder(codec)().decode(b"\x81", final=False) == ""
    except UnicodeDecodeError:        # e.g. WPC1252 (page 16), which python-escpos sends for œ Š Ÿ
        held = False
    if held:
        raise MessageError("multi-byte code page not supported", page=number)
    return codec


def decode_escpos(data: bytes, width: int = 42) -> Paper:
    paper = Paper()
    line: list[str] = []
    codec = "cp437"
    align = 0
    i = 0

    def end_line() -> None:
        text = "".join(line)
        if align == 1:
            text = text.strip().center(width).rstrip()
        elif align == 2:
            text = text.strip().rjust(width)
        paper.current.append(text.rstrip())
        line.clear()

    while i < len(data):
        b = data[i]
        if b == 0x0A:
            end_line()
            i += 1
        elif b in (0x1B, 0x1D):
            head = data[i:i + 2]
            if head == b"\x1dV":
                mode = data[i + 2] if i + 2 < len(data) else None
                size = 4 if mode in (65, 66) else 3
                if mode is None or i + size > len(data):
                    raise MessageError("truncated cut command", offset=i)
                i += size
                if line:
                    end_line()
                while paper.current and paper.current[-1] == "":
                    paper.current.pop()
                paper.receipts.append(paper.current)
                paper.current = []
                continue
            if head not in _ARGS:
                raise MessageError("unknown ESC/POS command", offset=i, command=head.hex())
            n = _ARGS[head]
            if i + 2 + n > len(data):
                raise MessageError("truncated ESC/POS command", offset=i)
            if head == b"\x1ba":
                align = data[i + 2] % 48
            if head == b"\x1bt":
                codec = _codec(data[i + 2])
            if head == b"\x1bd":
                for _ in range(data[i + 2]):
                    paper.current.append("")
            i += 2 + n
        elif b >= 0x20:
            line.append(bytes([b]).decode(codec, "replace"))
            i += 1
        else:
            i += 1  # other control bytes (CR, HT) carry no text
    if line:
        end_line()
    return paper
