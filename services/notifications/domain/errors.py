"""Typed errors of the notifications domain; each names the offending field."""

from __future__ import annotations


class NotificationError(ValueError):
    """A notifications rule was broken; `field` names the input an API should point at."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidTimezone(NotificationError):
    """A participant's time zone is not an IANA zone."""


class UnknownTimepoint(NotificationError):
    """A timepoint key that the protocol does not schedule."""


class IllegalTransition(NotificationError):
    """A delivery state change the state machine does not allow."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a message cannot go from {current!r} to {target!r}", field="state")
        self.current = current
        self.target = target


class TemplateMissing(NotificationError):
    """No template for a message kind in the wanted language nor the fallback language."""


class ForbiddenContent(NotificationError):
    """A rendered message names a module, arm or cluster; it must never be sent."""

    def __init__(self, kind: str, term: str) -> None:
        super().__init__(
            f"the rendered {kind} message mentions {term!r}, which would unblind or reveal "
            "treatment; fix the template or its inputs", field="template")
        self.term = term


class InvalidSignature(NotificationError):
    """A provider callback whose signature or timestamp does not verify."""
