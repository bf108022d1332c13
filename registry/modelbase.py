"""The declarative base every registry table derives from (registry.models, registry.fleet_models)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base"]


class Base(DeclarativeBase):
    pass
