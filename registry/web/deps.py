"""What every route gets: the signed-in user, a database session, the time, the translator (Ctx).

`api_ctx` answers 401 to a request without a live session, `page_ctx` sends the browser to /login. Both
refuse a POST, PUT, PATCH or DELETE whose CSRF token (form field "csrf" or header X-CSRF-Token) is not the
session's own (403): a page of another site cannot make a signed-in browser change anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.web.auth import session_of
from registry.web.errors import Forbidden, NotSignedIn
from registry.web.settings import WebSettings
from registry.web.texts import translator
from registry.web_models import WebUser

if TYPE_CHECKING:
    from registry.keys import RegistryKeys

__all__ = ["COOKIE", "Ctx", "GoToSignIn", "api_ctx", "need", "page_ctx", "utcnow"]

COOKIE = "fc_session"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class GoToSignIn(NotSignedIn):
    """A page asked without a session: registry.web.app redirects to /login?next=..."""


@dataclasses.dataclass
class Ctx:
    s: Session
    user: WebUser
    now: dt.datetime
    keys: RegistryKeys | None
    t: translator
    lang: str
    csrf: str
    settings: WebSettings
    path: str

    @property
    def actor(self) -> str:
        return f"web:{self.user.login}"


async def sent_csrf(request: Request) -> str | None:
    """The token a changing request carries (the form is read once and kept by Starlette)."""
    if request.method in SAFE:
        return None
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded",
                                                           "multipart/form-data")):
        value = (await request.form()).get("csrf")
        return value if isinstance(value, str) else None
    return None


def _ctx(request: Request, sent: str | None, page: bool) -> Iterator[Ctx]:
    state = request.app.state
    settings: WebSettings = state.settings
    now = state.clock()
    with state.sessions() as s:
        found = session_of(s, request.cookies.get(COOKIE), now=now, idle=settings.idle)
        if found is None:
            s.commit()
            raise GoToSignIn("sign in first") if page else NotSignedIn("sign in first")
        row, user = found
        same = bool(sent) and hmac.compare_digest((sent or "").encode(), row.csrf.encode())
        if request.method not in SAFE and not same:
            raise Forbidden("the form is stale or not from this site (CSRF): reload the page")
        s.commit()
        lang = user.language
        yield Ctx(s=s, user=user, now=now, keys=state.keys, t=translator(lang), lang=lang, csrf=row.csrf,
                  settings=settings, path=request.url.path)


def api_ctx(request: Request, sent: Annotated[str | None, Depends(sent_csrf)]) -> Iterator[Ctx]:
    yield from _ctx(request, sent, page=False)


def page_ctx(request: Request, sent: Annotated[str | None, Depends(sent_csrf)]) -> Iterator[Ctx]:
    yield from _ctx(request, sent, page=True)


def need(ctx: Ctx, *roles: str) -> None:
    if ctx.user.role not in roles:
        raise Forbidden()
