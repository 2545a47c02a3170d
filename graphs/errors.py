"""Foreman's error root and the errors the graphs raise or expect from their ports."""

from __future__ import annotations


class ForemanError(Exception):
    """Root of every error Foreman raises on purpose."""


class ModelCallError(ForemanError):
    """A model call failed for good (after the router's own retries and fallbacks)."""


class BudgetExhausted(ModelCallError):
    """The run's budget cannot cover another model call."""


class LedgerError(ForemanError):
    """Structured model output could not be parsed or validated, even after repair."""
