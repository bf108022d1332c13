"""Pages: Jinja templates (autoescaped) with the translator and the formats every page uses."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

if TYPE_CHECKING:
    from registry.web.deps import Ctx

__all__ = ["litres", "money", "page", "redirect", "templates", "when"]


def money(cents: int | None) -> str:
    """1234 -> "12.34", -5 -> "-0.05"."""
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def litres(cl: int | None) -> str:
    return "" if cl is None else money(cl)


def when(at: dt.datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M")


@cache
def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                      autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(money=money, litres=litres, when=when)
    return env


def page(ctx: Ctx, name: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    body = templates().get_template(name).render(t=ctx.t, user=ctx.user, csrf=ctx.csrf, lang=ctx.lang,
                                                 path=ctx.path, **values)
    return HTMLResponse(body, status_code=status)


def redirect(url: str) -> RedirectResponse:
    """After a form's POST: see the result with a GET (303)."""
    return RedirectResponse(url, status_code=303)
