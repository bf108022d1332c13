"""What a route raises; registry.web.app turns each into its status code (a page or JSON)."""

from __future__ import annotations

from contracts.errors import ForecourtError

__all__ = ["BadInput", "Forbidden", "NotFound", "NotSignedIn", "WebError"]


class WebError(ForecourtError):
    status = 400


class BadInput(WebError, ValueError):
    status = 400


class NotSignedIn(WebError):
    status = 401


class Forbidden(WebError, PermissionError):
    status = 403

    def __init__(self, message: str = "not allowed for this role") -> None:
        super().__init__(message)


class NotFound(WebError, LookupError):
    """Also what an object outside the user's scope gives: an id is never confirmed to exist."""

    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")
