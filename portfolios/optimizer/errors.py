"""Errors of the pure optimizer.

They mirror ``rebalance_app.exceptions.ApplicationError`` (a ``message`` for people and an
``extra`` dict with details) without importing it: importing ``rebalance_app`` loads Django,
and this package must stay free of it. The service that runs the optimizer re-raises them as
application errors.
"""

from __future__ import annotations

from typing import Any


class OptimizerError(Exception):
    """Base of every optimizer error: ``message`` for a PM, ``extra`` for the record."""

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ProblemInvalid(OptimizerError):
    """The arrays handed to the optimizer are inconsistent (shapes, signs, NaN)."""


class Infeasible(OptimizerError):
    """The constraints conflict; ``extra["conflicts"]`` lists the ones with non-zero slack."""


class SolverFailed(OptimizerError):
    """Both the default and the fallback solver failed on a problem that may be feasible."""
