"""Sealing event payloads to their one consumer, and opening them at the consumer's edge.

Errors name fields only: a validation message would echo values (contact details, MPI-D
answers, a cluster), and dead letters and logs are read by people who must not see them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput
from .events import FORM_SAVED_FOR, Envelope, Event, FormSaved, SealedFormSaved
from .sealing import Keyring, Recipient

M = TypeVar("M", bound=BaseModel)


def _fields_of(err: ValidationError) -> list[str]:
    return sorted({".".join(map(str, e["loc"])) or "(payload)" for e in err.errors()})


def validated(cls: type[M], data: Any, *, what: str) -> M:
    """`cls` from `data`, or a poison-message error that names the fields at fault only."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        fields = _fields_of(err)
        raise InvalidInput(f"{what} is invalid at {', '.join(fields)}",
                           field=fields[0] if fields else None) from None


def payload(env: Envelope, cls: type[Event]) -> Any:
    return validated(cls, env.data, what=f"{env.subject} payload")


def seal_form_saved(recipient: Recipient, saved: FormSaved) -> SealedFormSaved:
    cls = FORM_SAVED_FOR[recipient.service]
    sealed = recipient.seal_json(saved.model_dump(mode="json"), subject=cls.subject,
                                 record=saved.record)
    return cls(record=saved.record, sealed=sealed)


def open_form_saved(env: Envelope, keyring: Keyring) -> FormSaved:
    """The consumer's own cut of a save; poison if it is not sealed to this service."""
    cls = FORM_SAVED_FOR[keyring.service]
    if env.subject != cls.subject:
        raise InvalidInput(f"{keyring.service} reads {cls.subject}, not {env.subject}")
    outer = payload(env, cls)
    opened = keyring.open_json(outer.sealed, subject=cls.subject, record=outer.record)
    saved = validated(FormSaved, opened, what=f"sealed form on {cls.subject}")
    if saved.record != outer.record:
        raise InvalidInput(f"sealed form on {cls.subject} names another record")
    return saved
