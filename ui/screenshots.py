"""Every screen in every language drawn to PNG: `make screens` writes docs/screens/<language>/<screen>.png
(and the English screens in the high-contrast theme under docs/screens/high_contrast/en/).

The fields are samples of what a sale passes (prices, a pump, a decline reason); product and application
names are station and card data, not screen texts. Run with SDL_VIDEODRIVER=dummy where there is no display.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.screens import Screen
from ui.catalog import LANGUAGES
from ui.draw import THEMES, Drawing, draw_view
from ui.view import View
from ui.views import build

__all__ = ["SAMPLES", "main", "shoot", "views"]

PRICES = [("Diesel", 1789), ("Super E10", 1859), ("AdBlue", 899)]
SAMPLES: dict[str, dict[str, Any]] = {
    "idle": {"prices": PRICES, "currency": "EUR", "payments": ["bank", "fleet", "loyalty"],
             "languages": LANGUAGES},                   # as the terminal shows it: the language choice too
    "idle_bank_only": {"prices": PRICES[:2], "currency": "EUR", "payments": ["bank"], "languages": LANGUAGES},
    "select_pump": {"pumps": "1,2,3,4"},
    "choose_product": {"products": PRICES, "currency": "EUR"},
    "enter_preset": {"mode": "amount", "amount_cents": 5000, "currency": "EUR"},
    "enter_pin": {"stars": "**", "tries": 3},
    "enter_pin_last": {"stars": ""},
    "declined": {"reason": "wrong_pin", "tries": 2},
    "lift_nozzle": {"pump": 2, "volume_cl": 4000},
    "lift_nozzle_amount": {"pump": 2, "amount_cents": 5000, "currency": "EUR"},
    "approved_up_to": {"pump": 3, "amount_cents": 15000, "currency": "EUR"},
    "card_loaded": {"volume_cl": 20000},
    "filling": {"pump": 2, "volume_cl": 2417, "amount_cents": 4324, "currency": "EUR"},
    "hang_up": {"pump": 2}, "completing": {"pump": 2},
    "thank_you": {"volume_cl": 2417, "amount_cents": 4324, "currency": "EUR", "points": 43},
    "choose_app": {"options": ["VISA DEBIT", "VISA CREDIT"]},
    "question": {"question": "odometer", "answer": "128450"},
    "card_read": {"card": "loyalty", "points": 1240},
    "enter_voucher": {"stars": "*******", "digits": 19},
    "voucher_refused": {"voucher": "voucher_used"},
    "attendant_sign_in": {"stars": "***"},
    "attendant_reports": {"sales": 42, "total_cents": 123456, "currency": "EUR", "kind": "Z", "shift": 7},
    "attendant_menu": {"items": ["cash_prepay", "topup", "redeem", "movements", "clear_pump", "settle_open",
                                 "reprint", "x_report", "z_report", "sign_out"]},
    "attendant_result": {"done": "redeem", "ok": False, "reason": "insufficient_points", "balance": 80},
}


def views(languages: tuple[str, ...] = LANGUAGES) -> Iterator[View]:
    """Every screen id in every language, with sample fields."""
    for lang in languages:
        for screen in Screen:
            yield build(screen, lang, **SAMPLES.get(screen.value, {}))


def shoot(view: View, size: tuple[int, int] = (800, 480),
          theme: str = "normal") -> tuple[pygame.Surface, Drawing]:
    surface = pygame.Surface(size)
    return surface, draw_view(surface, view, THEMES[theme])


def main(argv: list[str] | None = None) -> int:
    """Writes <out>/<language>/<screen>.png (normal theme) and <out>/high_contrast/en/<screen>.png; exits 1
    when a text had to be clipped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/screens", type=Path)
    parser.add_argument("--size", default="800x480")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    pygame.display.init()
    pygame.font.init()
    clipped = 0
    runs = [("normal", args.out, LANGUAGES), ("high_contrast", args.out / "high_contrast", ("en",))]
    for theme, out, languages in runs:
        for view in views(languages):
            surface, drawing = shoot(view, (width, height), theme)
            folder = out / view.language
            folder.mkdir(parents=True, exist_ok=True)
            pygame.image.save(surface, str(folder / f"{view.screen}.png"))
            for placed in drawing.clipped():
                clipped += 1
                print(f"clipped: {theme} {view.language}/{view.screen}: {placed.text!r}", file=sys.stderr)
    return 1 if clipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
