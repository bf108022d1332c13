"""The cardholder's pages: their points (/me, over registry.web.api_cardholder) and the public sign-up for a
loyalty card (/signup, registry.web.signup).

The sign-up form is for people not signed in, so it carries its own CSRF token as the sign-in form does
(double submit: a cookie and a form field, both random, compared). The page after a sign-up is the only one
that shows the card's full number (no-store, never logged); the new cardholder is signed in by it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.exc import IntegrityError
from starlette.responses import HTMLResponse, Response

from registry.keys import RegistryKeys
from registry.vouchers import group_code
from registry.web import signup
from registry.web.api_cardholder import my_points
from registry.web.auth import LANGUAGES, new_session
from registry.web.deps import COOKIE, Ctx, page_ctx
from registry.web.errors import Forbidden
from registry.web.render import page, templates
from registry.web.settings import WebSettings
from registry.web.texts import negotiate, translator
from registry.web_models import WebUser

__all__ = ["router"]

router = APIRouter()
PRE = "fc_signup"           # the sign-up form's CSRF cookie


@router.get("/me", include_in_schema=False)
def points_page(ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    return page(ctx, "cardholder/points.html", points=my_points(ctx))


def _language(request: Request, asked: str | None = None) -> str:
    return negotiate(asked or request.query_params.get("lang") or request.cookies.get("fc_lang"),
                     request.headers.get("accept-language"))


def _public(request: Request, name: str, lang: str, *, status: int = 200, csrf: str = "",
            **values: Any) -> HTMLResponse:
    body = templates().get_template(name).render(t=translator(lang), user=None, csrf=csrf, lang=lang,
                                                 path=request.url.path, **values)
    return HTMLResponse(body, status_code=status)


def _form_page(request: Request, lang: str, *, status: int = 200, error: str = "",
               values: dict[str, str] | None = None) -> HTMLResponse:
    """The sign-up form with a fresh CSRF token in its cookie and field."""
    token = secrets.token_urlsafe(24)
    response = _public(request, "cardholder/signup.html", lang, status=status, csrf=token, error=error,
                       languages=LANGUAGES, form=values or {"name": "", "email": "", "language": lang})
    settings: WebSettings = request.app.state.settings
    response.set_cookie(PRE, token, httponly=True, samesite="strict", secure=settings.secure_cookies)
    response.set_cookie("fc_lang", lang, samesite="lax", secure=settings.secure_cookies)
    return response


@router.get("/signup", include_in_schema=False)
def signup_form(request: Request) -> Response:
    return _form_page(request, _language(request))


@router.post("/signup", include_in_schema=False)
def signup_send(request: Request, name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "",
                password: Annotated[str, Form()] = "", language: Annotated[str, Form()] = "en",
                consent: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    pre = request.cookies.get(PRE, "")
    if not pre or not hmac.compare_digest(pre.encode(), csrf.encode()):
        raise Forbidden("the form is stale or not from this site (CSRF): reload the page")
    lang = _language(request, language)
    values = {"name": name[:100], "email": email[:254], "language": lang}     # never the password
    state = request.app.state
    keys: RegistryKeys | None = state.keys
    if keys is None:
        return _form_page(request, lang, status=503, error="cardholder.error_unavailable", values=values)
    form = signup.SignUpForm(name[:200], email[:300], password[:300], lang, consent == "yes")
    settings: WebSettings = state.settings
    now = state.clock()
    with state.sessions() as s:
        try:
            done = signup.sign_up(s, keys, form, now=now,
                                  where=request.client.host if request.client else "")
            user = s.get(WebUser, done.user_id)
            if user is None:                # just added in this transaction
                raise Forbidden()
            opened = new_session(s, user, now=now, longest=settings.longest)
            s.commit()
        except signup.SignUpError as refused:
            s.rollback()
            return _form_page(request, lang, status=400, error=f"cardholder.error_{refused.code}",
                              values=values)
        except IntegrityError:              # the same e-mail signed up at the same moment elsewhere
            s.rollback()
            return _form_page(request, lang, status=400, error="cardholder.error_email_taken", values=values)
    response = _public(request, "cardholder/signed_up.html", lang, csrf=opened.csrf,
                       number=group_code(done.number), masked=done.masked,
                       expiry=f"{done.expiry[2:]}/{done.expiry[:2]}", login=done.login)
    response.set_cookie(COOKIE, opened.cookie, httponly=True, samesite="lax", secure=settings.secure_cookies,
                        max_age=int(settings.longest.total_seconds()))
    response.delete_cookie(PRE)
    return response
