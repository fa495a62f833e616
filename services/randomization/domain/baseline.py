"""When a participant of a design without a prediction step is randomized, and into which
levels: read from the baseline event's REDCap row (pure; the handler passes the fields).

A participant is ready once consent and eligibility are 1, every baseline form is complete
(2) and the withdrawal flag is not set; their level of each stratification factor comes
from the factor's field (choice codes, or a number cut at the declared points) and the site
from the site field or REDCap's data access group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import RandomizationError

if TYPE_CHECKING:
    from services.core.protocol import TrialProtocol

DAG_FIELD = "redcap_data_access_group"


def site_field(protocol: TrialProtocol) -> str:
    return protocol.randomization.site.field or DAG_FIELD


def _value(fields: Mapping[str, str], name: str) -> str:
    return (fields.get(name) or "").strip()


def unmet(protocol: TrialProtocol, fields: Mapping[str, str]) -> list[str]:
    """What still stands between this baseline and randomization (empty: randomize now)."""
    r, f = protocol.redcap, protocol.redcap.fields
    missing = [f"{name} is not 1" for name in (f.consent, f.eligible)
               if _value(fields, name) != "1"]
    missing += [f"{form}_complete is not 2" for form in r.baseline_forms
                if _value(fields, f"{form}_complete") != "2"]
    if _value(fields, f.withdrawn) == "1":
        missing.append("withdrawn")
    return missing


def levels_of(protocol: TrialProtocol, fields: Mapping[str, str]) -> dict[str, str]:
    """The participant's level of each factor in `stratify_by`; RandomizationError names
    the REDCap field when a value is missing or is no level."""
    r = protocol.randomization
    levels: dict[str, str] = {}
    for name in r.stratify_by:
        if name == "site":
            where = site_field(protocol)
            site = _value(fields, where)
            if r.site.codes is not None:
                site = r.site.codes.get(site, site)
            if site not in r.sites:
                raise RandomizationError(f"{where}: {site or 'no value'!r} is not a site "
                                         f"({', '.join(r.sites)})", field=where)
            levels["site"] = site
        elif name in r.factor_by_key:
            factor = r.factor_by_key[name]
            try:
                levels[name] = factor.level_of(fields.get(factor.field))
            except ValueError as err:
                raise RandomizationError(str(err), field=factor.field) from None
    return levels


def is_baseline(protocol: TrialProtocol, event: str | None) -> bool:
    """REDCap names events `<event>_arm_<n>` on the wire; the protocol without the arm."""
    return protocol.redcap.event_key(event) == protocol.redcap.baseline_event


def marked_withdrawn(protocol: TrialProtocol, fields: Mapping[str, str]) -> bool:
    return _value(fields, protocol.redcap.fields.withdrawn) == "1"


def must_hold(protocol: TrialProtocol, field: str) -> str:
    """What a stratification field must hold, for staff to correct it (never its value)."""
    r = protocol.randomization
    if field == site_field(protocol):
        if r.site.field is None:
            return (f"the record must be in the REDCap data access group of a site "
                    f"({', '.join(r.sites)})")
        allowed = sorted(r.site.codes) if r.site.codes is not None else r.sites
        return f"{field} must be one of {', '.join(allowed)} (the sites)"
    for factor in r.factors:
        if factor.field == field:
            if factor.codes is not None:
                return f"{field} must be one of the codes {', '.join(sorted(factor.codes))}"
            cuts = ", ".join(f"{c:g}" for c in factor.cut_points or ())
            return f"{field} must be a number (cut at {cuts} into {', '.join(factor.level_keys)})"
    return f"{field} must hold a level of its stratification factor"
