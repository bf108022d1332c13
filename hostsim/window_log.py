"""The simulator window's log pane: the terminal's log file, tailed, shortened and masked.

The terminal logs one event a line (firmware.logs: time, process, level, logger, message, key=value fields);
a JSON line ({"time", "level", "logger", "msg", ...}) is read too. The terminal never logs a PIN or a card
number, and the pane does not trust that: every line passes mask() before it is kept, which blanks digit
runs as long as a card number (ISO/IEC 7812: 12 to 19 digits, keeping the last four as a receipt does), track
2 data, long hex strings (keys, PIN blocks, cryptograms) and the value of any field named like a secret.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["LogTail", "mask", "shorten"]

_SECRET_NAMES = r"pin|pin_?block|pan|track\d?|ksn|key|cvv|cvc|cvm_?data|icc|arqc|cryptogram|secret|token"
_FIELD = re.compile(rf"(?i)\b((?:\w*_)?(?:{_SECRET_NAMES}))(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")
_TRACK2 = re.compile(r";?\d{12,19}[=D]\d{4,}\??")
_DIGITS = re.compile(r"(?<![\d.,])\d(?:[ -]?\d){11,18}(?![\d.,])")
_HEX = re.compile(r"(?i)(?<![0-9a-f-])[0-9a-f]{16,}(?![0-9a-f-])")
_PIN_WORD = re.compile(r"(?i)\bpin\b(\W{0,3})\d{4,12}\b")
_LINE = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)[,.]\d+ \S+ (\w+) (.*)$")
_SENSITIVE_KEYS = re.compile(rf"(?i)^(?:\w*_)?(?:{_SECRET_NAMES})$")


def _mask_digits(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "*" * (len(digits) - 4) + digits[-4:]


def mask(line: str) -> str:
    """line with every card number, track, PIN, key-like hex string and secret-named field value blanked."""
    line = _FIELD.sub(lambda m: m.group(1) + m.group(2) + "***", line)
    line = _TRACK2.sub("[track data]", line)
    line = _PIN_WORD.sub(lambda m: "PIN" + m.group(1) + "****", line)
    line = _DIGITS.sub(_mask_digits, line)
    return _HEX.sub("[hex]", line)


def _drop_secrets(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: ("***" if _SENSITIVE_KEYS.match(str(k)) else _drop_secrets(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_drop_secrets(v) for v in doc]
    return doc


def shorten(line: str) -> str:
    """A log line as the pane shows it: time of day, level, logger without its package, message, fields."""
    line = line.rstrip("\r\n")
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            doc = _drop_secrets(doc)
            when = str(doc.pop("time", doc.pop("ts", "")))[11:19]
            level = str(doc.pop("level", doc.pop("levelname", "")))
            logger = str(doc.pop("logger", doc.pop("name", ""))).rsplit(".", 1)[-1]
            msg = str(doc.pop("msg", doc.pop("message", doc.pop("event", ""))))
            fields = " ".join(f"{k}={v}" for k, v in sorted(doc.items()))
            return mask(f"{when} {level} {logger}: {msg} {fields}".strip())
    m = _LINE.match(line)
    if m:
        when, level, rest = m.groups()
        logger, sep, msg = rest.partition(": ")
        rest = f"{logger.rsplit('.', 1)[-1]}: {msg}" if sep else rest
        return mask(f"{when} {level} {rest}")
    return mask(line)


class LogTail:
    """The last `keep` lines of a growing log file, shortened and masked; poll() reads what was added."""

    def __init__(self, path: Path, keep: int = 400) -> None:
        self.path = Path(path)
        self.lines: deque[str] = deque(maxlen=keep)
        self._pos = 0
        self._partial = b""

    def note(self, line: str) -> None:
        """A line of the simulator's own (a fault it injected), among the terminal's, masked alike."""
        self.lines.append(mask(f"{time.strftime('%H:%M:%S')} SIM {line}"))

    def poll(self) -> int:
        """Read the lines written since the last poll; returns how many were added."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return 0
        if size < self._pos:            # the file was replaced or truncated: start again
            self._pos, self._partial = 0, b""
        if size == self._pos:
            return 0
        with self.path.open("rb") as f:
            f.seek(self._pos)
            data = f.read(min(size - self._pos, 1 << 20))
        self._pos += len(data)
        *whole, self._partial = (self._partial + data).split(b"\n")
        for raw in whole:
            if raw.strip():
                self.lines.append(shorten(raw.decode("utf-8", "replace")))
        return len([r for r in whole if r.strip()])
