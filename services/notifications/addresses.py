"""One e-mail address per contact field.

A REDCap text field can hold anything staff type, including `a@x.org, b@y.org`; an
`EmailMessage` would then send one reminder to every address in it (a participant's
study contact reaching a relative's or an employer's mailbox). The field is accepted only
when it is exactly one address (checked by email-validator, without a DNS look-up).
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def single_address(value: str | None) -> str | None:
    """The one address `value` holds, normalised; None when empty or not exactly one."""
    if not value or not value.strip():
        return None
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.normalized
