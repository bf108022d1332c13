"""What one screen shows, as plain data: the model every panel draws, the simulator shows and speech reads.

A View holds texts already in the screen's language (from the catalogues, ui.views builds them); drawing
(ui.draw) and speaking only lay them out. to_doc()/from_doc() carry it over the socket panel as JSON.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from contracts.errors import MessageError

__all__ = ["Figure", "Option", "Tone", "View"]


class Tone(enum.StrEnum):
    """How the screen's news is: shown by an icon and a word as well as a colour, never by colour alone
    (EN 301 549 11.1.4.1, WCAG 2.1 1.4.1 Use of Color)."""

    INFO = "info"
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Figure:
    """A labelled value the driver reads at a glance: litres and amount while filling, the PIN's stars."""

    key: str           # what it is (litres, amount, pin, ...), for tests and speech
    label: str
    value: str


@dataclasses.dataclass(frozen=True)
class Option:
    """A choice: key is the panel key that picks it (a digit), label its text."""

    key: str
    label: str


@dataclasses.dataclass(frozen=True)
class View:
    screen: str
    language: str
    rtl: bool
    title: str
    lines: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()
    options: tuple[Option, ...] = ()
    hint: str = ""
    tone: Tone = Tone.INFO
    tone_word: str = ""
    timeout: float | None = None      # seconds a prompt waits for the driver; None: not a prompt

    def texts(self) -> tuple[str, ...]:
        """Every text on the screen, for checks (fit, glyphs) and logs."""
        return (self.title, *self.lines, *(t for f in self.figures for t in (f.label, f.value)),
                *(o.label for o in self.options), *((self.hint,) if self.hint else ()),
                *((self.tone_word,) if self.tone_word else ()))

    def plain_lines(self) -> tuple[str, ...]:
        """The screen as lines of text, top to bottom: for the simulator's log and the socket panel."""
        return (self.title, *self.lines, *(f"{f.label}: {f.value}" for f in self.figures),
                *(f"{o.key}: {o.label}" for o in self.options), *((self.hint,) if self.hint else ()))

    def speech(self) -> str:
        """What a spoken prompt says: the tone's word when it is not plain news, then the screen in order."""
        parts = [self.tone_word] if self.tone in (Tone.WARNING, Tone.ERROR) and self.tone_word else []
        parts += [self.title, *self.lines, *(f"{f.label} {f.value}" for f in self.figures),
                  *(f"{o.key}, {o.label}" for o in self.options)]
        if self.hint:
            parts.append(self.hint)
        return ". ".join(p.rstrip(". ") for p in parts if p.strip()) + "."

    def option_for(self, function_key: int) -> Option | None:
        """The option a function key beside the screen picks: F1..F4 the first four options."""
        return self.options[function_key - 1] if 1 <= function_key <= min(4, len(self.options)) else None

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["tone"] = self.tone.value
        doc["lines"] = list(self.lines)
        doc["figures"] = [[f.key, f.label, f.value] for f in self.figures]
        doc["options"] = [[o.key, o.label] for o in self.options]
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> View:
        """A View from to_doc()'s JSON; anything else is a MessageError."""
        try:
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            timeout = doc.get("timeout")
            view = cls(
                screen=_str(doc["screen"]), language=_str(doc["language"]), rtl=bool(doc["rtl"]),
                title=_str(doc["title"]), lines=tuple(_str(x) for x in doc.get("lines", [])),
                figures=tuple(Figure(_str(k), _str(label), _str(v))
                              for k, label, v in doc.get("figures", [])),
                options=tuple(Option(_str(k), _str(label)) for k, label in doc.get("options", [])),
                hint=_str(doc.get("hint", "")), tone=Tone(doc.get("tone", "info")),
                tone_word=_str(doc.get("tone_word", "")),
                timeout=None if timeout is None else float(timeout))
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"not a screen view: {exc}") from exc
        return view


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"text expected, got {type(value).__name__}")
    return value
