"""The back office as an ASGI application (FastAPI over Starlette; served by uvicorn, registry.web.serve).

FastAPI because the JSON API's OpenAPI description comes from the same type hints that validate each
request (pydantic), and it runs plain (synchronous) route functions on a thread pool, as the registry's
SQLAlchemy code is written. Pages are Jinja templates rendered on the server over the same endpoint
functions as the API; no JavaScript framework and nothing loaded from another host.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from contracts.errors import ForecourtError
from registry.keys import RegistryKeys
from registry.web.auth import session_of
from registry.web.deps import COOKIE, GoToSignIn, utcnow
from registry.web.errors import WebError
from registry.web.render import templates
from registry.web.routes import ROUTERS
from registry.web.settings import WebSettings
from registry.web.texts import negotiate, translator

__all__ = ["create_app"]

log = logging.getLogger("forecourt.web")

HEADERS = {
    # nothing from another host, no inline script, never in a frame
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _language(request: Request) -> str:
    """The signed-in user's language, else the sign-in page's choice, else the browser's."""
    state = request.app.state
    try:
        with state.sessions() as s:
            found = session_of(s, request.cookies.get(COOKIE), now=state.clock(), idle=state.settings.idle)
            if found is not None:
                return str(found[1].language)
    except SQLAlchemyError:
        pass
    return negotiate(request.cookies.get("fc_lang"), request.headers.get("accept-language"))


def _error_page(request: Request, status: int, message: str) -> Response:
    lang = _language(request)
    body = templates().get_template("error.html").render(
        t=translator(lang), user=None, csrf="", lang=lang, path=request.url.path, status=status,
        message=message)
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _answer(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"error": message}, status_code=status, headers=HEADERS)
    return _error_page(request, status, message)


async def _web_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, GoToSignIn) and request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path, safe='/')}", status_code=303)
    status = exc.status if isinstance(exc, WebError) else 400
    return _answer(request, status, str(exc))


async def _invalid(request: Request, exc: Exception) -> Response:
    where = ""
    if isinstance(exc, RequestValidationError | ValidationError) and exc.errors():
        first = exc.errors()[0]
        loc = first.get("loc", ())
        loc = loc[1:] if isinstance(exc, RequestValidationError) else loc      # ("body", field) or (field,)
        where = ".".join(str(p) for p in loc) + ": " + str(first.get("msg", ""))
    return _answer(request, 422, f"invalid input {where}".strip())


def create_app(settings: WebSettings, *, engine: Engine | None = None,
               sessions: sessionmaker[Session] | None = None, keys: RegistryKeys | None = None,
               clock: Callable[[], dt.datetime] = utcnow) -> FastAPI:
    """The application on `settings.db_url` (migrated on open), or on given sessions (tests)."""
    app = FastAPI(title="forecourt back office", version="1", openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None)
    if sessions is None:
        from registry.db import open_database
        engine, sessions = open_database(settings.db_url)
    app.state.settings, app.state.sessions = settings, sessions
    app.state.engine, app.state.clock = engine, clock
    app.state.keys = keys if keys is not None else _keys(settings.state_dir)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.add_exception_handler(ForecourtError, _web_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ValidationError, _invalid)      # a model a page's handler builds from a form

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app


def _keys(state_dir: Path | None) -> RegistryKeys | None:
    """The registry's keys (card tokens, sealed numbers), when its state directory is given and has them."""
    if state_dir is None or not (state_dir / "registry-keys.json").is_file():
        return None
    from registry.keys import load_or_create_keys
    return load_or_create_keys(state_dir / "registry-keys.json", None)
