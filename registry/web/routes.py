"""Every router of the back office, in the order they are mounted: the core's own first."""

from __future__ import annotations

from fastapi import APIRouter

from registry.web import (
    api_cardholder,
    api_fleet,
    api_fleet_customer,
    api_loyalty,
    api_network,
    api_purse,
    api_reports,
    pages_auth,
    pages_cardholder,
    pages_fleet,
    pages_fleet_customer,
    pages_loyalty,
    pages_network,
    pages_purse,
    pages_reports,
    pages_sales,
    pages_users,
)

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    pages_auth.router, pages_users.router, pages_sales.router,
    api_fleet.router, pages_fleet.router,
    api_fleet_customer.router, pages_fleet_customer.router,
    api_network.router, pages_network.router,
    api_loyalty.router, pages_loyalty.router,
    api_cardholder.router, pages_cardholder.router,
    api_reports.router, pages_reports.router,
    api_purse.router, pages_purse.router,
]
