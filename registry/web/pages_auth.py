"""Sign in and out, the home page of each role, the user's language; /api/session for API clients."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel
from starlette.responses import HTMLResponse, JSONResponse, Response

from registry.web.auth import LANGUAGES, VERIFYING, end_session, new_session, sign_in
from registry.web.deps import COOKIE, Ctx, api_ctx, page_ctx
from registry.web.errors import BadInput, Forbidden
from registry.web.render import page, redirect, templates
from registry.web.settings import WebSettings
from registry.web.texts import negotiate, translator

__all__ = ["router"]

router = APIRouter()
PRE = "fc_pre"          # the sign-in form's own CSRF token (double submit: cookie and field)
HOME = {"operator": "/", "station": "/", "fleet": "/customer", "cardholder": "/me"}


def _safe_next(target: str | None, role: str) -> str:
    """Only a path of this site (never //host or a scheme): no open redirect after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME.get(role, "/")


def _login_page(request: Request, *, status: int = 200, message: str = "",
                lang: str | None = None) -> Response:
    lang = negotiate(lang or request.query_params.get("lang") or request.cookies.get("fc_lang"),
                     request.headers.get("accept-language"))
    token = secrets.token_urlsafe(24)
    body = templates().get_template("login.html").render(
        t=translator(lang), user=None, csrf=token, lang=lang, path="/login", languages=LANGUAGES,
        next=request.query_params.get("next", ""), message=message)
    response = HTMLResponse(body, status_code=status)
    settings: WebSettings = request.app.state.settings
    response.set_cookie(PRE, token, httponly=True, samesite="strict", secure=settings.secure_cookies)
    response.set_cookie("fc_lang", lang, samesite="lax", secure=settings.secure_cookies)
    return response


@router.get("/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    return _login_page(request)


def _open(request: Request, login: str, password: str) -> tuple[str, str, str]:
    """Sign in: (cookie, csrf, role); SignInRefused after counting the try."""
    state = request.app.state
    settings: WebSettings = state.settings
    now = state.clock()
    where = request.client.host if request.client else ""
    with VERIFYING, state.sessions() as s:
        try:
            user = sign_in(s, login[:200], password[:200], now=now, tries=settings.tries,
                           lock_for=settings.lock_for, where=where)
        except BadInput:
            s.commit()                      # the try is counted
            raise
        opened = new_session(s, user, now=now, longest=settings.longest)
        role = user.role
        s.commit()
    return opened.cookie, opened.csrf, role


def _set_session(response: Response, request: Request, cookie: str) -> None:
    settings: WebSettings = request.app.state.settings
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="lax", secure=settings.secure_cookies,
                        max_age=int(settings.longest.total_seconds()))
    response.delete_cookie(PRE)


@router.post("/login", include_in_schema=False)
def login(request: Request, login: Annotated[str, Form()], password: Annotated[str, Form()],
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    pre = request.cookies.get(PRE, "")
    if not pre or not hmac.compare_digest(pre.encode(), csrf.encode()):
        raise Forbidden("the form is stale or not from this site (CSRF): reload the page")
    try:
        cookie, _, role = _open(request, login, password)
    except BadInput:
        lang = request.cookies.get("fc_lang")
        text = translator(negotiate(lang, None))("core.wrong_sign_in")
        return _login_page(request, status=401, message=text)
    response = redirect(_safe_next(next, role))
    _set_session(response, request, cookie)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    end_session(ctx.s, request.cookies.get(COOKIE))
    ctx.s.commit()
    response = redirect("/login")
    response.delete_cookie(COOKIE)
    return response


@router.get("/", include_in_schema=False)
def home(ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    if ctx.user.role in ("fleet", "cardholder"):
        return redirect(HOME[ctx.user.role])
    from registry.web.pages_sales import latest_sales
    return page(ctx, "home.html", sales=latest_sales(ctx, limit=10))


@router.post("/language", include_in_schema=False)
def language(ctx: Annotated[Ctx, Depends(page_ctx)], lang: Annotated[str, Form()],
             back: Annotated[str, Form()] = "/") -> Response:
    if lang not in LANGUAGES:
        raise BadInput("no such language")
    ctx.user.language = lang
    ctx.s.commit()
    return redirect(_safe_next(back, ctx.user.role))


class SignInBody(BaseModel):
    login: str
    password: str


class Me(BaseModel):
    login: str
    name: str
    role: str
    language: str
    csrf: str


@router.post("/api/session", response_model=Me, tags=["session"])
def api_sign_in(request: Request, body: SignInBody) -> Response:
    """Sign in (API clients): the session cookie is set; send the returned csrf as X-CSRF-Token on changes.
    Answers 401 to a wrong login or password and to a locked account alike."""
    try:
        cookie, csrf, _ = _open(request, body.login, body.password)
    except BadInput as exc:
        return JSONResponse({"error": str(exc)}, status_code=401)
    with request.app.state.sessions() as s:
        from registry.web.auth import session_of
        found = session_of(s, cookie, now=request.app.state.clock(), idle=request.app.state.settings.idle)
        if found is None:
            raise BadInput("session not opened")
        user = found[1]
        me = Me(login=user.login, name=user.name, role=user.role, language=user.language, csrf=csrf)
    response = JSONResponse(me.model_dump())
    _set_session(response, request, cookie)
    return response


@router.get("/api/me", response_model=Me, tags=["session"])
def api_me(ctx: Annotated[Ctx, Depends(api_ctx)]) -> Me:
    u = ctx.user
    return Me(login=u.login, name=u.name, role=u.role, language=u.language, csrf=ctx.csrf)


@router.delete("/api/session", tags=["session"])
def api_sign_out(request: Request, ctx: Annotated[Ctx, Depends(api_ctx)]) -> Response:
    end_session(ctx.s, request.cookies.get(COOKIE))
    ctx.s.commit()
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(COOKIE)
    return response
