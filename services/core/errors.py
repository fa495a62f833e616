"""Typed errors. The domain raises them; the API maps them to problem+json; the bus
maps them to ack outcomes (transient → nak with backoff, permanent → term)."""

from __future__ import annotations

from typing import Any


class DomainError(ValueError):
    """A request the rules refuse. `field` names the input at fault, when there is one."""

    status = 422
    title = "Unprocessable request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def extensions(self) -> dict[str, Any]:
        """Further members of its problem+json body (say, every problem of an import)."""
        return {}


class InvalidInput(DomainError):
    status = 422
    title = "Invalid input"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class TransientError(RuntimeError):
    """Worth retrying later (a peer is down, a lock timed out)."""


class PermanentError(RuntimeError):
    """Retrying cannot help: the message is poison and goes to the dead-letter stream."""
