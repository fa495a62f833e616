"""Checking one value against its data dictionary row, as REDCap does on import and on save.

Min/max in the dictionary are soft in REDCap (an out-of-range value is saved with a
warning) unless the field carries the @FORCE-MINMAX action tag; the format of a
validated text field, a choice code and a form status are always hard.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from .design import FORM_STATUS, FieldDef

FORMAT_ERROR = (
    "The value you provided could not be validated because it does not follow the "
    "expected format. Please try again."
)

_DATE = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_HM = r"([01]\d|2[0-3]):[0-5]\d"
_HMS = _HM + r":[0-5]\d"

# validation type -> (pattern of the stored value, kind used for min/max comparisons)
VALIDATIONS: dict[str, tuple[str, str]] = {
    "date": (_DATE, "date"),
    "datetime": (_DATE + " " + _HM, "date"),
    "datetime_seconds": (_DATE + " " + _HMS, "date"),
    "time": (_HM, "text"),
    "time_hh_mm_ss": (_HMS, "text"),
    "time_mm_ss": (r"[0-5]\d:[0-5]\d", "text"),
    "integer": (r"[-+]?\d+", "number"),
    "number": (r"[-+]?(\d+(\.\d+)?|\.\d+)", "number"),
    "number_1dp": (r"[-+]?\d+\.\d", "number"),
    "number_2dp": (r"[-+]?\d+\.\d{2}", "number"),
    "number_3dp": (r"[-+]?\d+\.\d{3}", "number"),
    "number_4dp": (r"[-+]?\d+\.\d{4}", "number"),
    "number_comma_decimal": (r"[-+]?(\d+(,\d+)?|,\d+)", "text"),
    "email": (r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", "text"),
    "phone": (r"\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]?\d{4}", "text"),  # North American only
    "alpha_only": (r"[A-Za-z]+", "text"),
    "zipcode": (r"\d{5}(-\d{4})?", "text"),
    "postalcode_germany": (r"\d{5}", "text"),
    "postalcode_uk": (r"[A-Za-z]{1,2}\d[A-Za-z\d]? ?\d[A-Za-z]{2}", "text"),
    "postalcode_canada": (r"[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d", "text"),
}

# REDCap's internal names (used in ODM files) for the dictionary's names
VALIDATION_ALIASES = {"int": "integer", "float": "number"}

_DATE_ORDERS = ("ymd", "mdy", "dmy")


def base_validation(name: str) -> str:
    """`date_dmy` -> `date`, `datetime_seconds_ymd` -> `datetime_seconds`, `int` -> `integer`."""
    name = VALIDATION_ALIASES.get(name, name)
    for order in _DATE_ORDERS:
        if name.endswith("_" + order) and name.startswith(("date", "datetime")):
            return name[: -len(order) - 1]
    return name


def is_known_validation(name: str) -> bool:
    return base_validation(name) in VALIDATIONS


def reorder_date(value: str, date_format: str) -> str:
    """Turn an MDY or DMY date(-time) as the API's `dateFormat` allows into REDCap's Y-M-D."""
    fmt = date_format.upper()
    if fmt == "YMD":
        return value
    m = re.fullmatch(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})(.*)", value)
    if not m:
        return value
    a, b, year, rest = m.groups()
    month, day = (a, b) if fmt == "MDY" else (b, a)
    return f"{year}-{int(month):02d}-{int(day):02d}{rest}"


def check_value(
    f: FieldDef, value: str, *, date_format: str = "YMD", now: Callable[[], datetime] | None = None
) -> tuple[str, str | None]:
    """Return (the value as REDCap stores it, an error message or None). Blank is always valid."""
    value = value.strip()
    if value == "":
        return value, None
    if f.field_type in ("radio", "dropdown", "yesno", "truefalse"):
        codes = {c for c, _ in f.choices}
        return value, None if value in codes else f"The value is not a valid category for {f.field_name}"
    if f.field_type == "slider":
        ok = re.fullmatch(r"\d{1,3}", value) is not None and int(value) <= 100
        return value, None if ok else FORMAT_ERROR
    if f.field_type != "text" or not f.validation:
        return value, None
    kind = base_validation(f.validation)
    pattern, compare = VALIDATIONS[kind]
    if compare == "date":
        value = reorder_date(value, date_format)
    if re.fullmatch(pattern, value) is None or (compare == "date" and not _real_date(value)):
        return value, FORMAT_ERROR
    if "@FORCE-MINMAX" in f.action_tags():
        problem = _outside_range(f, value, compare, now or (lambda: datetime.now(UTC)))
        if problem:
            return value, problem
    return value, None


def check_form_status(field_name: str, value: str) -> str | None:
    codes = {c for c, _ in FORM_STATUS}
    return None if value.strip() in codes | {""} else (
        f"The value is not a valid category for {field_name}")


def check_checkbox(value: str) -> str | None:
    return None if value.strip() in ("", "0", "1") else FORMAT_ERROR


def _real_date(value: str) -> bool:
    try:
        datetime.strptime(value[:10], "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _date_bound(raw: str, now: Callable[[], datetime]) -> str | None:
    raw = raw.strip().lower()
    if raw in ("today", "now"):
        return now().strftime("%Y-%m-%d %H:%M:%S" if raw == "now" else "%Y-%m-%d")
    return raw or None


def _outside_range(f: FieldDef, value: str, compare: str, now: Callable[[], datetime]) -> str | None:
    lo_raw, hi_raw = f.text_validation_min.strip(), f.text_validation_max.strip()
    if compare == "number":
        number = float(value)
        outside = (lo_raw != "" and number < float(lo_raw)) or (hi_raw != "" and number > float(hi_raw))
    elif compare == "date":
        low, high = _date_bound(lo_raw, now), _date_bound(hi_raw, now)
        outside = (low is not None and value < low) or (high is not None and value > high)
    else:
        return None
    if not outside:
        return None
    return (
        f"The value you provided is outside the allowed range ({lo_raw or 'no limit'} - "
        f"{hi_raw or 'no limit'}), and @FORCE-MINMAX does not admit it."
    )
