"""The one exception hierarchy of the application.

Services raise these; the DRF exception handler (`rebalance_app.api.exception_handler`) maps
them to HTTP answers with the body ``{"message": ..., "extra": {...}}`` and pages show the same
message. Message templates live as constants at the top of the service module that raises them.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """Base of every error a user can be shown."""

    http_status = 400

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    """Input that cannot be accepted as it is."""


class PermissionDenied(ApplicationError):
    """The actor's role does not allow this action."""

    http_status = 403


class NotFound(ApplicationError):
    """The object does not exist, or the actor may not see it (never tell which)."""

    http_status = 404


class InvalidTransition(ApplicationError):
    """A state change that the object's current state does not allow."""

    http_status = 409


class FourEyesViolation(PermissionDenied):
    """The same person tried to both submit and approve."""


class StalePrice(ApplicationError):
    """A price is older than the configured age."""


class ImportRejected(ApplicationError):
    """A file failed validation; ``extra["errors"]`` lists every bad row."""


class AuditChainBroken(ApplicationError):
    """The audit trail does not verify."""

    http_status = 409
