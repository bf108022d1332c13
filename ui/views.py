"""Builders of the terminal's screens: a screen id and its fields -> a View in the driver's language.

Every text comes from the catalogues (ui.catalog), every number through ui.format. Fields are what the
sale passes to Panel.show(): typed values (volume_cl, amount_cents and currency, price_milli) are
formatted per locale; a string is shown as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from contracts.reasons import LEGACY_REASONS, parse_reason
from contracts.screens import Screen
from ui.catalog import LANGUAGES, has, is_rtl, language_of, text
from ui.format import (
    digits,
    format_date,
    format_list,
    format_litres,
    format_money,
    format_number,
    format_unit_price,
)
from ui.view import Figure, Option, Tone, View

__all__ = ["ADVICE", "PROMPT_TIMEOUT", "TONES", "build"]

PROMPT_TIMEOUT = 30.0       # seconds a prompt waits when the sale does not say (firmware's own timeout)

# what the driver should do after a decline, by reason: an advice.* key
ADVICE: Mapping[str, str] = {
    "wrong_pin": "try_again", "card_error": "try_again", "chip_error": "try_again",
    "card_removed": "try_again", "cancelled": "try_again", "interrupted": "try_again",
    "pin_tries_exceeded": "other_card", "card_blocked": "other_card", "card_expired": "other_card",
    "unknown_card": "other_card", "not_accepted": "other_card", "card_declined": "other_card",
    "limit_exhausted": "other_card", "do_not_honour": "other_card", "insufficient_funds": "other_card",
    "pump_unknown": "other_pump", "pump_busy": "other_pump", "product_not_allowed": "attendant",
    "station_not_allowed": "other_card", "outside_time_window": "other_card", "prompts_required": "try_again",
    "odometer_invalid": "try_again", "vehicle_unknown": "try_again", "driver_unknown": "try_again",
    "host_unavailable": "later", "host_timeout": "later", "purchase_open": "later",
}

_ERROR = ("declined", "host_unavailable", "card_not_accepted", "card_error", "pump_error", "out_of_service",
          "offline", "card_removed", "voucher_refused")
_WARNING = ("enter_pin_last", "swipe_card", "insert_chip", "no_fuel", "pump_busy", "remove_card", "keep_card")
_OK = ("approved_up_to", "lift_nozzle", "lift_nozzle_amount", "thank_you", "card_read", "card_loaded")
TONES: Mapping[str, Tone] = {**{s: Tone.ERROR for s in _ERROR}, **{s: Tone.WARNING for s in _WARNING},
                             **{s: Tone.OK for s in _OK}}
_PROMPTS = frozenset({"select_pump", "choose_app", "question", "enter_pin", "enter_pin_last",
                      "choose_product", "enter_preset", "choose_language", "swipe_card", "attendant_sign_in",
                      "attendant_menu", "attendant_reports", "enter_voucher", "attendant_card"})

_NONE = "-"        # an empty entry: a dash, the same in every language
_APPS = re.compile(r"(\d+) (.+?)(?=\s{2,}\d+ |$)")


def build(screen: Screen | str, language: str = "en", **fields: Any) -> View:
    """The View of a screen in a language (an unknown language shows English)."""
    lang = language_of(language)
    sid = str(Screen(screen).value) if isinstance(screen, Screen) else str(screen)
    f = _display_fields(lang, fields)
    lines: list[str] = [text(lang, f"{sid}.body", **f)] if has(lang, f"{sid}.body") else []
    figures: list[Figure] = []
    options: list[Option] = []
    special = _SPECIAL.get(sid)
    if special is not None:
        special(lang, fields, f, lines, figures, options)
    hint = text(lang, f"{sid}.hint", **f) if has(lang, f"{sid}.hint") else ""
    tone = TONES.get(sid, Tone.INFO)
    timeout = float(fields["timeout"]) if "timeout" in fields else PROMPT_TIMEOUT if sid in _PROMPTS else None
    return View(screen=sid, language=lang, rtl=is_rtl(lang), title=text(lang, f"{sid}.title", **f),
                lines=tuple(lines), figures=tuple(figures), options=tuple(options), hint=hint, tone=tone,
                tone_word=text(lang, f"tone.{tone.value}"), timeout=timeout)


def _display_fields(lang: str, fields: Mapping[str, Any]) -> dict[str, str]:
    """The fields a catalogue text fills in, as the language writes them."""
    out = {name: str(value) for name, value in fields.items()}
    if "pump" in fields:
        out["pump"] = _number(lang, fields["pump"])
    if "tries" in fields:
        out["tries"] = _number(lang, fields["tries"])
    if "reason" in fields:
        code = str(fields["reason"])
        code = LEGACY_REASONS[code].value if code in LEGACY_REASONS else code
        out["reason"] = text(lang, f"reason.{code}") if has(lang, f"reason.{code}") else code
    for name, prefix in (("question", "ask"), ("card", "card")):
        if name in fields and has(lang, f"{prefix}.{fields[name]}"):
            out[name] = text(lang, f"{prefix}.{fields[name]}")
    return out


def _number(lang: str, value: Any) -> str:
    return format_number(lang, int(value)) if str(value).isdigit() else str(value)


def litres(lang: str, fields: Mapping[str, Any]) -> str:
    """The volume of volume_cl (centilitres); a litres string as it is."""
    if isinstance(fields.get("volume_cl"), int):
        return format_litres(lang, fields["volume_cl"])
    return str(fields.get("litres", ""))


def money(lang: str, fields: Mapping[str, Any], name: str = "amount") -> str:
    """The amount of <name>_cents with currency; an amount string as it is."""
    cents = fields.get(f"{name}_cents")
    if isinstance(cents, int) and isinstance(fields.get("currency"), str):
        return format_money(lang, cents, fields["currency"])
    return str(fields.get(name, ""))


def _label(lang: str, key: str) -> str:
    return text(lang, f"label.{key}")


# -- screens with more than a title, a body and a hint -------------------------------------------------


def _idle(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str], figures: list[Figure],
          options: list[Option]) -> None:
    """Prices per product (prices: (product, price_milli) pairs with currency), the payment means accepted
    (payments: payment.* names) and, when languages is given, the language choice."""
    currency = raw.get("currency")
    for product, milli in raw.get("prices", ()):
        value = format_unit_price(lang, int(milli), currency) if isinstance(currency, str) else str(milli)
        figures.append(Figure("price", str(product), value))
    means = [text(lang, f"payment.{m}") for m in raw.get("payments", ()) if has(lang, f"payment.{m}")]
    if means:
        lines.append(text(lang, "idle.accepts", means=format_list(lang, means)))
    if "voucher" in raw.get("payments", ()):
        lines.append(text(lang, "idle.voucher_key"))
    if raw.get("languages"):
        options.extend(_language_options(raw["languages"]))
    _backlog(lang, raw, f, lines, figures, options)


def _backlog(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str], figures: list[Figure],
             options: list[Option]) -> None:
    """Sales the registry has not acknowledged (backlog, a count) and the oldest one's age (oldest_min)."""
    if raw.get("backlog"):
        lines.append(text(lang, "idle.backlog", count=_number(lang, raw["backlog"]),
                          minutes=_number(lang, raw.get("oldest_min", 0))))


def _language_options(codes: Iterable[str] | bool) -> list[Option]:
    shown = LANGUAGES if isinstance(codes, bool) else tuple(c for c in codes if c in LANGUAGES)
    return [Option(str(i), text(code, "language.name")) for i, code in enumerate(shown, 1)]


def _choose_language(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                     figures: list[Figure], options: list[Option]) -> None:
    options.extend(_language_options(raw.get("languages", True)))


def _select_pump(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                 figures: list[Figure], options: list[Option]) -> None:
    """pumps: the free pumps' numbers, each on its digit key (a string "1,3" as older callers send it)."""
    pumps = raw.get("pumps", ())
    numbers = [p.strip() for p in pumps.split(",")] if isinstance(pumps, str) else [str(p) for p in pumps]
    options.extend(Option(n, text(lang, "option.pump", pump=_number(lang, n))) for n in numbers if n)


def _choose_app(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                figures: list[Figure], options: list[Option]) -> None:
    """options: the applications' labels in the card's order (card data, shown as the card gives them), each
    on its digit key; or apps "1 A  2 B" as older callers send it."""
    names = raw.get("options")
    if names is None:
        names = [m[2] for m in _APPS.finditer(str(raw.get("apps", "")).strip())]
    options.extend(Option(str(i), str(name)) for i, name in enumerate(names, 1))


def _choose_product(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                    figures: list[Figure], options: list[Option]) -> None:
    """products: (product, price_milli) pairs with currency."""
    currency = raw.get("currency")
    for i, (product, milli) in enumerate(raw.get("products", ()), 1):
        price = format_unit_price(lang, int(milli), currency) if isinstance(currency, str) else ""
        options.append(Option(str(i), text(lang, "option.product", product=product, price=price).strip()))


def _enter_preset(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                  figures: list[Figure], options: list[Option]) -> None:
    """mode: amount or litres; the entry so far as amount_cents with currency, or volume_cl; the granted
    maximum as max_cents or max_cl; modes=True offers the switch between amount and litres (keys 1, 2:
    only where digits do not type the entry)."""
    if raw.get("mode") == "litres":
        figures.append(Figure("litres", _label(lang, "litres"), litres(lang, raw) or _NONE))
        if isinstance(raw.get("max_cl"), int):
            figures.append(Figure("maximum", _label(lang, "maximum"), format_litres(lang, raw["max_cl"])))
    else:
        figures.append(Figure("amount", _label(lang, "amount"), money(lang, raw) or _NONE))
        if isinstance(raw.get("max_cents"), int):
            top = {"amount_cents": raw["max_cents"], "currency": raw.get("currency")}
            figures.append(Figure("maximum", _label(lang, "maximum"), money(lang, top)))
    if raw.get("modes"):
        options.extend([Option("1", text(lang, "option.amount")), Option("2", text(lang, "option.litres"))])


def _pin(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str], figures: list[Figure],
         options: list[Option]) -> None:
    if "tries" in raw:
        lines.append(text(lang, "enter_pin.tries", **f))
    figures.append(Figure("pin", _label(lang, "pin"), str(raw.get("stars", "")) or _NONE))


def _declined(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
              figures: list[Figure], options: list[Option]) -> None:
    """reason: a reason code; tries: the PIN tries left, shown with a wrong PIN when the host tells them."""
    if "reason" in raw:
        code = parse_reason(str(raw["reason"])).value
        pin_tries = code == "wrong_pin" and "tries" in raw
        lines.append(text(lang, "declined.wrong_pin_tries", **f) if pin_tries else f["reason"])
        lines.append(text(lang, f"advice.{ADVICE[code]}"))


def _question(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
              figures: list[Figure], options: list[Option]) -> None:
    typed = digits(lang, str(raw.get("answer", "")))     # in the locale's own digits, as every figure
    figures.append(Figure("answer", _label(lang, "entry"), typed or _NONE))


def _max_litres(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                figures: list[Figure], options: list[Option]) -> None:
    figures.append(Figure("litres", _label(lang, "maximum"), litres(lang, raw)))


def _max_amount(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                figures: list[Figure], options: list[Option]) -> None:
    figures.append(Figure("amount", _label(lang, "maximum"), money(lang, raw)))


def _approved(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
              figures: list[Figure], options: list[Option]) -> None:
    figures.append(Figure("amount", _label(lang, "amount"), money(lang, raw)))


def _card_loaded(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                 figures: list[Figure], options: list[Option]) -> None:
    """What a chip wallet took: litres or money, as the wallet counts."""
    if "volume_cl" in raw:
        figures.append(Figure("litres", _label(lang, "litres"), litres(lang, raw)))
    else:
        figures.append(Figure("amount", _label(lang, "amount"), money(lang, raw)))


def _sale_figures(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                  figures: list[Figure], options: list[Option]) -> None:
    """Litres and amount as the pump reports them; points earned when a loyalty card took part."""
    figures.append(Figure("litres", _label(lang, "litres"), litres(lang, raw)))
    figures.append(Figure("amount", _label(lang, "amount"), money(lang, raw)))
    if "points" in raw:
        figures.append(Figure("points", _label(lang, "points"), _number(lang, raw["points"])))


def _card_read(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
               figures: list[Figure], options: list[Option]) -> None:
    """points: a loyalty card's balance, when the registry was asked."""
    if "points" in raw:
        lines.append(text(lang, "card_read.points", points=_number(lang, raw["points"])))


def _enter_voucher(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                   figures: list[Figure], options: list[Option]) -> None:
    """stars: one per digit typed (the code itself never reaches a screen)."""
    figures.append(Figure("code", _label(lang, "code"), str(raw.get("stars", "")) or _NONE))


def _voucher_refused(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                     figures: list[Figure], options: list[Option]) -> None:
    """voucher: the registry's reason (contracts.service_messages.ServiceReason)."""
    key = f"voucher.{raw.get('voucher', '')}"
    lines.append(text(lang, key if has(lang, key) else "voucher.voucher_unknown"))


def _attendant_sign_in(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                       figures: list[Figure], options: list[Option]) -> None:
    figures.append(Figure("code", _label(lang, "code"), str(raw.get("stars", "")) or _NONE))


def _attendant_menu(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                    figures: list[Figure], options: list[Option]) -> None:
    """items: the menu's entries (menu.* texts); digit i picks the i-th, 0 the tenth (firmware.attendant)."""
    items = raw.get("items") or ("reports", "prices", "close_shift", "sign_out")
    options.extend(Option(str(i % 10), text(lang, f"menu.{item}")) for i, item in enumerate(items, 1)
                   if has(lang, f"menu.{item}"))


def _attendant_reports(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                       figures: list[Figure], options: list[Option]) -> None:
    """sales (a count) and total (total_cents with currency); day a datetime.date; kind X or Z and shift."""
    if raw.get("kind") in ("X", "Z"):
        lines.append(text(lang, f"attendant_reports.{str(raw['kind']).lower()}"))
    if "shift" in raw:
        figures.append(Figure("shift", _label(lang, "shift"), _number(lang, raw["shift"])))
    if "day" in raw:
        figures.append(Figure("date", _label(lang, "date"), format_date(lang, raw["day"])))
    figures.append(Figure("sales", _label(lang, "sales"), _number(lang, raw.get("sales", 0))))
    figures.append(Figure("total", _label(lang, "total"), money(lang, raw, "total") or _NONE))


def _attendant_result(lang: str, raw: Mapping[str, Any], f: Mapping[str, str], lines: list[str],
                      figures: list[Figure], options: list[Option]) -> None:
    """done: the action (a menu.* item); ok, or reason (reason.* text); balance (points) when known."""
    done = f"menu.{raw.get('done', '')}"
    if has(lang, done):
        lines.append(text(lang, done))
    lines.append(text(lang, "attendant_result.ok") if raw.get("ok") else
                 text(lang, "attendant_result.refused", reason=f.get("reason", "")))
    if raw.get("pooled"):                   # a pooled card: no balance of its own (firmware.attendant.points)
        lines.append(text(lang, "reason.pooled"))
    if isinstance(raw.get("balance"), int):
        figures.append(Figure("balance", _label(lang, "balance"), _number(lang, raw["balance"])))
    if isinstance(raw.get("amount_cents"), int) and isinstance(raw.get("currency"), str):
        figures.append(Figure("amount", _label(lang, "amount"), money(lang, raw)))
    for move in raw.get("movements", ())[:SHOWN_MOVEMENTS]:      # newest first; the slip has them all
        lines.append(_movement(lang, move))


SHOWN_MOVEMENTS = 5     # a loyalty card's last movements on the result screen (all 30 on the slip)


def _movement(lang: str, move: Mapping[str, Any]) -> str:
    """One movement as the service answer gives it: local date and time, station, signed points."""
    try:
        day = format_date(lang, dt.date.fromisoformat(str(move.get("date", ""))))
    except ValueError:
        day = str(move.get("date", ""))[:10]
    points = int(move.get("points", 0))
    sign = "+" if points > 0 else "-" if points < 0 else ""
    figure = sign + _number(lang, abs(points))
    return f"{day} {str(move.get('time', ''))[:5]} {move.get('station', '')} {figure}"


_SPECIAL = {
    "idle": _idle, "idle_bank_only": _idle, "offline": _backlog, "choose_language": _choose_language,
    "select_pump": _select_pump,
    "choose_app": _choose_app, "choose_product": _choose_product, "enter_preset": _enter_preset,
    "enter_pin": _pin, "enter_pin_last": _pin, "declined": _declined, "question": _question,
    "lift_nozzle": _max_litres, "lift_nozzle_amount": _max_amount, "approved_up_to": _approved,
    "card_loaded": _card_loaded,
    "filling": _sale_figures, "thank_you": _sale_figures, "attendant_sign_in": _attendant_sign_in,
    "card_read": _card_read, "enter_voucher": _enter_voucher, "voucher_refused": _voucher_refused,
    "attendant_menu": _attendant_menu, "attendant_reports": _attendant_reports,
    "attendant_result": _attendant_result,
}
