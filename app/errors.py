"""Application errors; all derive from the one root, ``ForemanError``."""

from __future__ import annotations

from graphs.errors import BudgetExhausted, ForemanError, LedgerError, ModelCallError

__all__ = [
    "BudgetExhausted",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "ForemanError",
    "InvalidRequest",
    "LedgerError",
    "ModelCallError",
    "NotFound",
    "RateLimited",
    "RunStateError",
    "StorageError",
    "Unauthorized",
]


class ConfigError(ForemanError):
    """The configuration is invalid; the message names the file, the key and the reason."""


class NotFound(ForemanError):
    """A thread, run or other object does not exist (or is not visible to the caller)."""


class RunStateError(ForemanError):
    """The requested action does not fit the run's current state (e.g. nothing to resume)."""


class Conflict(RunStateError):
    """The object is busy or already in the requested state (a second run, a second decision)."""


class Unauthorized(ForemanError):
    """No valid credentials came with the request."""


class Forbidden(ForemanError):
    """The caller is known but lacks the role, or the object belongs to another tenant."""


class InvalidRequest(ForemanError):
    """A well-formed request that asks for something impossible; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RateLimited(ForemanError):
    """The tenant started too many runs too quickly; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageError(ForemanError):
    """The app database could not be opened or migrated."""
