"""The operators' pages of web users (add, unlock, disable) and of the audit log; the same as JSON."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from pydantic import BaseModel
from sqlalchemy import select
from starlette.responses import Response

from registry.fleet.admin import audit
from registry.fleet_models import AuditEntry
from registry.web.auth import ROLES, VERIFYING, add_user, set_password, verify_password
from registry.web.deps import Ctx, api_ctx, need, page_ctx
from registry.web.errors import BadInput, NotFound
from registry.web.render import page, redirect
from registry.web_models import WebUser

__all__ = ["router"]

router = APIRouter()


class UserOut(BaseModel):
    id: int
    login: str
    name: str
    role: str
    station_ids: str
    customer_id: int | None
    account_id: int | None
    language: str
    locked_until: dt.datetime | None
    disabled: bool
    last_sign_in: dt.datetime | None


class AuditOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    subject: str
    reason: str
    detail: str


def list_users(ctx: Ctx) -> list[UserOut]:
    need(ctx, "operator")
    return [UserOut.model_validate(u, from_attributes=True)
            for u in ctx.s.scalars(select(WebUser).order_by(WebUser.login))]


def list_audit(ctx: Ctx, *, actor: str = "", subject: str = "", limit: int = 200) -> list[AuditOut]:
    need(ctx, "operator")
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if subject:
        q = q.where(AuditEntry.subject == subject)
    return [AuditOut.model_validate(a, from_attributes=True) for a in ctx.s.scalars(q)]


def _user(ctx: Ctx, user_id: int) -> WebUser:
    need(ctx, "operator")
    row = ctx.s.get(WebUser, user_id)
    if row is None:
        raise NotFound("user")
    return row


def set_state(ctx: Ctx, user_id: int, action: str) -> UserOut:
    """unlock (wrong tries forgotten), disable (every session ends), enable."""
    row = _user(ctx, user_id)
    if action == "unlock":
        row.failed_tries, row.locked_until = 0, None
    elif action in ("disable", "enable"):
        if row.id == ctx.user.id:
            raise NotFound("user")          # not oneself: the network keeps at least the one signed in
        row.disabled = action == "disable"
    else:
        raise NotFound("action")
    audit(ctx.s, actor=ctx.actor, action=f"web_user_{action}", subject=f"web_user:{row.id}", now=ctx.now)
    ctx.s.commit()
    return UserOut.model_validate(row, from_attributes=True)


@router.get("/api/users", response_model=list[UserOut], tags=["users"])
def api_users(ctx: Annotated[Ctx, Depends(api_ctx)]) -> list[UserOut]:
    return list_users(ctx)


@router.post("/api/users/{user_id}/{action}", response_model=UserOut, tags=["users"])
def api_user_state(user_id: int, action: str, ctx: Annotated[Ctx, Depends(api_ctx)]) -> UserOut:
    return set_state(ctx, user_id, action)


@router.get("/api/audit", response_model=list[AuditOut], tags=["audit"])
def api_audit(ctx: Annotated[Ctx, Depends(api_ctx)], actor: str = "", subject: str = "",
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AuditOut]:
    return list_audit(ctx, actor=actor, subject=subject, limit=limit)


@router.get("/users", include_in_schema=False)
def users_page(ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    return page(ctx, "users.html", users=list_users(ctx), roles=ROLES)


@router.post("/users", include_in_schema=False)
def users_add(ctx: Annotated[Ctx, Depends(page_ctx)], login: Annotated[str, Form()],
              password: Annotated[str, Form()], role: Annotated[str, Form()],
              name: Annotated[str, Form()] = "", station_ids: Annotated[str, Form()] = "",
              customer_id: Annotated[str, Form()] = "",
              account_id: Annotated[str, Form()] = "",
              language: Annotated[str, Form()] = "en") -> Response:
    need(ctx, "operator")
    add_user(ctx.s, login, password, role=role, actor=ctx.actor, now=ctx.now, name=name,
             station_ids=station_ids,
             customer_id=int(customer_id) if customer_id.strip().isdigit() else None,
             account_id=int(account_id) if account_id.strip().isdigit() else None, language=language)
    ctx.s.commit()
    return redirect("/users")


@router.get("/audit", include_in_schema=False)
def audit_page(ctx: Annotated[Ctx, Depends(page_ctx)], actor: str = "", subject: str = "") -> Response:
    entries = list_audit(ctx, actor=actor, subject=subject)
    return page(ctx, "audit.html", entries=entries, actor=actor, subject=subject)


@router.get("/password", include_in_schema=False)
def password_page(ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    return page(ctx, "password.html")


@router.post("/password", include_in_schema=False)
def password_change(ctx: Annotated[Ctx, Depends(page_ctx)], current: Annotated[str, Form()],
                    new: Annotated[str, Form()], again: Annotated[str, Form()]) -> Response:
    """Any user, their own password: the current one first; every session of theirs ends (this one too)."""
    if new != again:
        raise BadInput(ctx.t("core.password_mismatch"))
    with VERIFYING:
        if not verify_password(ctx.user.password_hash, current[:200]):
            raise BadInput(ctx.t("core.password_wrong"))
        set_password(ctx.s, ctx.user, new, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return redirect("/login")


@router.post("/users/{user_id}/password", include_in_schema=False)
def users_password(user_id: int, ctx: Annotated[Ctx, Depends(page_ctx)],
                   password: Annotated[str, Form()]) -> Response:
    """An operator sets another user's password (a forgotten or leaked one): their sessions end."""
    row = _user(ctx, user_id)
    set_password(ctx.s, row, password, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return redirect("/users")


# after /users/{user_id}/password: the first route that matches a path answers it
@router.post("/users/{user_id}/{action}", include_in_schema=False)
def users_state(user_id: int, action: str, ctx: Annotated[Ctx, Depends(page_ctx)]) -> Response:
    set_state(ctx, user_id, action)
    return redirect("/users")
