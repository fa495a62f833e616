"""How the trial's REDCap project is shaped: the field names Tailor reads and writes.

Events: a timepoint's `redcap_event` is REDCap's unique event name without its arm
suffix; REDCap itself (DET, exports, imports) always uses the full unique name,
`<redcap_event>_arm_<arm_number>` (e.g. `t0_baseline_arm_1`).
"""

from __future__ import annotations

import re

from pydantic import Field

from .base import Strict


class RedcapFields(Strict):
    record_id: str = "record_id"
    age: str
    sex: str
    consent: str
    eligible: str
    withdrawn: str
    allocation_number: str
    allocation_module: str
    allocation_time: str
    mpid_item_prefix: str = Field(
        description="MPI-D item field = prefix + item key with '_' (e.g. mpid_1_6)"
    )
    # Contact details for reminders (consent form); None when the project has no such field.
    consent_date: str | None = None
    email: str | None = None
    mobile: str | None = None
    postal_address: str | None = None
    language: str | None = Field(None, description="radio field; codes are language codes")
    timezone: str | None = Field(None, description="text field holding an IANA time zone")
    contact_opt_out: str | None = Field(
        None, description="checkbox field; one choice per channel, exported as <field>___<channel>")


class RedcapProject(Strict):
    project_id: int = Field(gt=0)
    arm_number: int = Field(1, ge=1, description="the REDCap arm holding every event")
    arm_name: str = Field("All participants", description="REDCap arm label (not a trial arm)")
    baseline_event: str
    baseline_forms: list[str] = Field(min_length=1)
    withdrawal_form: str
    adverse_event_form: str
    allocation_form: str
    fields: RedcapFields
    sex_codes: dict[str, int] = Field(
        description="REDCap choice code → classifier coding (1 = female, 0 = male)"
    )

    def unique_event_name(self, event: str) -> str:
        """`t0_baseline` -> `t0_baseline_arm_1`: the name REDCap uses on the wire."""
        return f"{event}_arm_{self.arm_number}"

    def event_key(self, name: str | None) -> str | None:
        """The protocol's event key from either spelling (`t0_baseline` or REDCap's
        `t0_baseline_arm_1`); `form_saved` events carry the protocol key."""
        if not name:
            return None
        return self.event_of(name) or name

    def event_of(self, unique_event_name: str) -> str | None:
        """`t0_baseline_arm_1` -> `t0_baseline`; None for another arm or a malformed name."""
        m = re.fullmatch(r"(.+)_arm_(\d+)", unique_event_name)
        if m is None or int(m.group(2)) != self.arm_number:
            return None
        return m.group(1)
