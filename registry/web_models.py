"""The back office's tables (SQLAlchemy 2; issue 16): who signs in to the web application, their sessions,
and scheduled price changes. registry.models names every table of the registry.

A user has one role: "operator" (the network), "station" (a station manager: the stations in station_ids),
"fleet" (a fleet customer's manager: customer_id) or "cardholder" (account_id: their loyalty account).
Passwords are argon2id hashes (registry.web.auth); a session is kept by the SHA-256 of its cookie, never the
cookie itself.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from registry.modelbase import Base

__all__ = ["PriceChange", "WebSession", "WebUser"]


class WebUser(Base):
    __tablename__ = "web_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(200), unique=True)       # lower case: an e-mail or a name
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    station_ids: Mapped[str] = mapped_column(String(1000), default="")     # comma-separated (role station)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))      # role fleet
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))        # role cardholder
    language: Mapped[str] = mapped_column(String(8), default="en")
    password_hash: Mapped[str] = mapped_column(String(200))
    failed_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None]
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[dt.datetime]
    last_sign_in: Mapped[dt.datetime | None]


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user", "user_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)    # SHA-256 of the cookie, hex
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class PriceChange(Base):
    """A new unit price of one product at one station from a moment on (registry.prices applies it)."""

    __tablename__ = "price_changes"
    __table_args__ = (Index("ix_price_changes_due", "applied_at", "cancelled_at", "effective_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"))
    price_milli: Mapped[int] = mapped_column(BigInteger)
    effective_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    applied_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
