"""Message templates: both languages, fallback, escaping, and no module or arm words."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date
from pathlib import Path

import pytest

from services.core.protocol import TrialProtocol
from services.notifications.domain import (
    ContentGuard,
    ForbiddenContent,
    MessageFacts,
    MessageKind,
    MessageRenderer,
    NotificationError,
    TemplateMissing,
    prompt_link,
)
from services.notifications.domain.rendering import TEMPLATES


@pytest.fixture(scope="module")
def renderer(protocol: TrialProtocol) -> MessageRenderer:
    return MessageRenderer(protocol)


def facts(protocol: TrialProtocol, timepoint: str | None = "t1", **kw: object) -> MessageFacts:
    base = dict(
        timepoint=timepoint,
        link="https://redcap.example.org/surveys/?s=tok-123&x=1",  # REDCap's link, as given
        greeting_name="Erika Mustermann", respond_by=date(2025, 5, 7),
        recipient_address=("Erika Mustermann", "Lindenweg 2", "12345 Musterstadt"),
        phone_number="+49 170 1234567", letter_date=date(2025, 4, 30))
    base.update(kw)
    return MessageFacts(**base)  # type: ignore[arg-type]


def test_facts_offer_no_place_for_clinical_data():
    assert {f.name for f in dataclasses.fields(MessageFacts)} == {
        "timepoint", "link", "greeting_name", "respond_by", "interview",
        "recipient_address", "phone_number", "letter_date"}


@pytest.mark.parametrize("kind", list(MessageKind))
@pytest.mark.parametrize(("language", "greeting", "date_text"), [
    ("de", "Guten Tag", "07.05.2025"), ("en", "", "7 May 2025")])
def test_every_kind_renders_in_german_and_english(
        renderer: MessageRenderer, protocol: TrialProtocol, kind: MessageKind,
        language: str, greeting: str, date_text: str):
    tp = None if kind is MessageKind.DIARY_PROMPT else "t1"
    msg = renderer.render(kind, language, facts(protocol, tp))
    assert msg.language == language
    assert "tok-123" in msg.body
    label = protocol.reminders.messages.timepoint_labels["t1"][language]
    if tp:
        assert label in msg.body
    if kind in (MessageKind.EMAIL, MessageKind.LETTER):
        assert greeting in msg.body
    if kind in (MessageKind.EMAIL, MessageKind.SMS, MessageKind.PHONE, MessageKind.LETTER):
        assert date_text in msg.body
    assert (msg.subject is not None) == (kind is MessageKind.EMAIL)


def test_unknown_language_falls_back_to_the_protocols_first(
        renderer: MessageRenderer, protocol: TrialProtocol):
    msg = renderer.render("email", "fr", facts(protocol))
    assert msg.language == protocol.reminders.languages[0] == "de"
    assert "Befragung nach 12 Wochen" in msg.body


@pytest.mark.parametrize("language", ["de", "en", "fr"])
def test_no_message_names_a_module_arm_or_cluster(
        renderer: MessageRenderer, protocol: TrialProtocol, language: str):
    words = [m.key for m in protocol.modules] + [m.label for m in protocol.modules]
    words += [a.key for a in protocol.arms] + [c.label for c in protocol.clusters]
    words += ["personalized", "personalised", "arm", "cluster", "module", "diary", "Tagebuch"]
    for kind in MessageKind:
        for tp in ("week_4", "week_8", "t1", "t2", None):
            for interview in (False, True):
                msg = renderer.render(kind, language, facts(protocol, tp, interview=interview))
                text = f"{msg.subject or ''} {msg.body}".lower()
                for w in words:  # plain substring test, independent of the guard
                    assert w.lower() not in text, (kind, language, w)


def test_t2_mentions_the_telephone_interview(renderer: MessageRenderer, protocol: TrialProtocol):
    with_call = renderer.render("email", "en", facts(protocol, "t2", interview=True))
    without = renderer.render("email", "en", facts(protocol, "t1"))
    assert "telephone interview" in with_call.body
    assert "telephone interview" not in without.body


def test_guard_catches_module_and_arm_words_in_any_spelling(protocol: TrialProtocol):
    guard = ContentGuard.from_protocol(protocol)
    for leak in ("Your EMDI session", "pert", "non-personalized group", "Non Personalized",
                 "the personalized arm", "Pain  Extinction and\nRetraining", "adaptive copers",
                 "Emotional Distress Desensitization Therapy", "<b>EDDT</b>"):
        with pytest.raises(ForbiddenContent) as err:
            guard.check("sms", leak)
        assert err.value.field == "template"
    for fine in ("Expertenrat", "identity", "accept", "Ihre Befragung", "perpetual"):
        guard.check("sms", fine)


def test_a_leaking_value_stops_the_message(renderer: MessageRenderer, protocol: TrialProtocol):
    with pytest.raises(ForbiddenContent):
        renderer.render("email", "en", facts(protocol, greeting_name="EMDI group"))


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def test_per_timepoint_template_overrides_and_a_leaking_template_raises(
        protocol: TrialProtocol, template_copy: Path):
    (template_copy / "en" / "t2").mkdir()
    (template_copy / "en" / "t2" / "sms.txt.j2").write_text(
        "{{ study_name }}: follow-up call soon. {{ link }}\n")
    (template_copy / "en" / "t1").mkdir()
    (template_copy / "en" / "t1" / "sms.txt.j2").write_text("Your PERT questionnaire {{ link }}")
    r = MessageRenderer(protocol, template_copy)
    assert r.render("sms", "en", facts(protocol, "t2")).body.startswith(
        "PerPAIN study: follow-up call soon.")
    assert "reminder" in r.render("sms", "en", facts(protocol, "week_4")).body
    with pytest.raises(ForbiddenContent) as err:
        r.render("sms", "en", facts(protocol, "t1"))
    assert err.value.term == "PERT"


def test_undefined_variable_and_missing_template_are_typed_errors(
        protocol: TrialProtocol, template_copy: Path):
    (template_copy / "de" / "sms.txt.j2").write_text("{{ diagnosis }}")
    (template_copy / "en" / "sms.txt.j2").unlink()
    r = MessageRenderer(protocol, template_copy)
    with pytest.raises(NotificationError) as err:
        r.render("sms", "en", facts(protocol))  # falls back to de, which is broken
    assert err.value.field == "template"
    (template_copy / "de" / "sms.txt.j2").unlink()
    with pytest.raises(TemplateMissing) as missing:
        r.render("sms", "en", facts(protocol))
    assert missing.value.field == "language"


def test_letter_is_escaped_html_with_the_address(renderer: MessageRenderer,
                                                 protocol: TrialProtocol):
    msg = renderer.render("letter", "de", facts(
        protocol, greeting_name="<script>x</script>",
        recipient_address=("Erika <Mustermann>", "Lindenweg 2", "12345 Musterstadt")))
    assert msg.media_type == "text/html"
    assert msg.body.lstrip().startswith("<!DOCTYPE html>")
    assert "<script>" not in msg.body and "&lt;script&gt;" in msg.body
    assert "Erika &lt;Mustermann&gt;" in msg.body and "12345 Musterstadt" in msg.body
    assert "@page" in msg.body and "tok-123&amp;x=1" in msg.body
    for line in protocol.reminders.messages.contact.address:
        assert line in msg.body


def test_text_messages_are_not_html_escaped(renderer: MessageRenderer, protocol: TrialProtocol):
    msg = renderer.render("sms", "en", facts(protocol))
    assert msg.media_type == "text/plain" and "tok-123&x=1" in msg.body


def test_diary_prompt_link_of_an_app(renderer: MessageRenderer, protocol: TrialProtocol):
    app = protocol.diary.model_copy(update={
        "prompt_link": "https://diary.example/p/{token}"})
    link = prompt_link(app, "p-9")
    assert link == "https://diary.example/p/p-9"
    msg = renderer.render("diary_prompt", "de", MessageFacts(link=link))
    assert link in msg.body and len(msg.body) < 160


def test_a_redcap_diary_has_no_app_link(protocol: TrialProtocol):
    """PerPAIN's prompts link to the participant's REDCap survey (fetched at send time),
    so asking for an app link is refused, naming the setting."""
    with pytest.raises(NotificationError) as err:
        prompt_link(protocol.diary, "p-9")
    assert err.value.field == "prompt_link"


def test_a_redcap_survey_link_fits_one_text_message(renderer: MessageRenderer):
    link = "https://redcap.perpain.example/surveys/?s=ABCDEFGHJK"
    msg = renderer.render("diary_prompt", "de", MessageFacts(link=link))
    assert link in msg.body and len(msg.body) < 160
