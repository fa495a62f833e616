"""Reminder and diary-prompt policies, and what the messages may say."""

from __future__ import annotations

import string
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict, iana_zone

Channel = Literal["email", "sms", "phone", "letter"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# language code → text; a missing language falls back to the policy's first language.
LocalizedText = dict[str, str]


def _placeholders_only(template: str, allowed: set[str]) -> str:
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = names - allowed
    if unknown:
        raise ValueError(f"unknown placeholders {sorted(unknown)} (allowed: {sorted(allowed)})")
    return template


class ReminderStep(Strict):
    day: int = Field(ge=0, description="days after the timepoint's due date")
    channel: Channel


class QuietHours(Strict):
    """No contact between `start` and `end` (local time; may wrap midnight) nor on `days`."""

    start: time
    end: time
    days: list[Weekday] = Field(default_factory=list)

    @field_validator("days")
    @classmethod
    def _some_day_allowed(cls, v: list[Weekday]) -> list[Weekday]:
        if len(set(v)) >= 7:
            raise ValueError("quiet on every day of the week leaves no time to send")
        return v


class StudyContact(Strict):
    """Who participants reach about a questionnaire; printed in every message."""

    name: LocalizedText = Field(min_length=1)
    phone: str
    email: str
    address: list[str] = Field(min_length=1, description="postal address lines (letters)")


class MessageSettings(Strict):
    """The only facts a message may carry besides the greeting and the timepoint."""

    study_name: LocalizedText = Field(min_length=1)
    contact: StudyContact
    timepoint_labels: dict[str, LocalizedText] = Field(
        default_factory=dict, description="timepoint key → label per language")


class ReminderPolicy(Strict):
    max_per_timepoint: int = Field(gt=0)
    steps: list[ReminderStep] = Field(min_length=1)
    quiet_hours: QuietHours
    default_timezone: str = "Europe/Berlin"
    languages: list[str] = Field(min_length=1)
    send_time: time = Field(
        default=time(10, 0), description="local time of day reminders go out on their day")
    stop_at_window_end: bool = Field(
        default=True, description="no reminder once the timepoint's window has closed")
    messages: MessageSettings

    @field_validator("steps")
    @classmethod
    def _days_increase(cls, v: list[ReminderStep]) -> list[ReminderStep]:
        days = [s.day for s in v]
        if days != sorted(days):
            raise ValueError("reminder steps must be in order of day")
        return v

    _known_zone = field_validator("default_timezone")(lambda v: iana_zone(v))


class DiaryPolicy(Strict):
    module: str
    prompts_per_day: int = Field(gt=0)
    waking_start: time
    waking_end: time = Field(description="may be earlier than waking_start (window wraps midnight)")
    min_gap_minutes: int = Field(ge=0)
    expires_after_minutes: int = Field(gt=0)
    days: int = Field(gt=0)
    channel: Channel = "sms"
    prompt_link: str | None = Field(
        default=None,
        description="URL of a prompt's questions in an app of the trial's own, with {token}; "
                    "None: the participant's REDCap survey link of the prompt's instance of "
                    "`answer_form`, fetched through the gateway when the prompt is sent")
    answer_form: str | None = Field(
        default=None,
        description="REDCap instrument that records a diary answer, a repeating survey in "
                    "`answer_event` (one instance per prompt); a complete save marks its "
                    "prompt answered (adherence). None: answers are not reported back to Tailor")
    answer_event: str | None = Field(
        default=None,
        description="the REDCap event (without its arm suffix) holding `answer_form`; its own "
                    "event, not a timepoint's")

    @field_validator("prompt_link")
    @classmethod
    def _link_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else _placeholders_only(v, {"token"})

    @model_validator(mode="after")
    def _answers_somewhere(self) -> DiaryPolicy:
        if self.prompt_link is None and self.answer_form is None:
            raise ValueError("diary: a prompt needs somewhere to answer: prompt_link (an app "
                             "of the trial's own) or answer_form (a REDCap survey)")
        if (self.answer_form is None) != (self.answer_event is None):
            raise ValueError("diary: answer_form and answer_event go together (the REDCap "
                             "instrument and the event that holds it)")
        return self

    @property
    def prompts(self) -> int:
        """Prompts in the whole diary: the highest instance number of `answer_form`."""
        return self.days * self.prompts_per_day

    def instance_of(self, day: int, index: int) -> int:
        """The `answer_form` instance (1-based) that answers prompt `index` of diary `day`:
        one instance per prompt, so a saved instance names the prompt it answers."""
        if not (0 <= day < self.days and 0 <= index < self.prompts_per_day):
            raise ValueError(f"no diary prompt {day}.{index}")
        return day * self.prompts_per_day + index + 1

    def prompt_of(self, instance: int) -> tuple[int, int]:
        """(day, index) of the prompt an `answer_form` instance answers."""
        if not 1 <= instance <= self.prompts:
            raise ValueError(f"instance {instance} is not one of the diary's "
                             f"{self.prompts} prompts")
        return divmod(instance - 1, self.prompts_per_day)

    @model_validator(mode="after")
    def _prompts_fit_window(self) -> DiaryPolicy:
        day = date(2000, 1, 1)
        start = datetime.combine(day, self.waking_start)
        end = datetime.combine(day, self.waking_end)
        if end <= start:
            end += timedelta(days=1)
        needed = timedelta(minutes=self.min_gap_minutes * (self.prompts_per_day - 1))
        if needed > end - start:
            raise ValueError(
                f"{self.prompts_per_day} prompts {self.min_gap_minutes} min apart do not fit "
                f"between {self.waking_start} and {self.waking_end}")
        return self
