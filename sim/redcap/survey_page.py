"""`/surveys/?s=<hash>` and `/surveys/?sq=<hash>`: the pages a survey participant opens.

GET shows the survey as a plain HTML form; POST (form-encoded field values, as the page
submits them) saves the response like REDCap's survey page: the instrument's fields only,
form status Complete, `<instrument>_timestamp` set, logged as "[survey respondent]", and
the project's Data Entry Trigger fired once with that user name.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from .context import ProjectContext
from .det import det_payload, fire_det
from .emulator import Emulator
from .params import ApiError
from .surveys import Place, by_hash, mark_response, participant, survey_url
from .ui import FormSave, save_form

RESPONDENT = "[survey respondent]"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                        f"{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}"
                        "</body></html>", status)


def _form_html(ctx: ProjectContext, instrument: str) -> str:
    rows = []
    for f in ctx.design.fields_of(instrument):
        if f.field_name == ctx.design.record_id_field or f.field_type in (
                "descriptive", "calc", "file", "sql"):
            continue
        label = escape(f.field_label or f.field_name)
        if f.field_type == "checkbox":
            inputs = "".join(f"<label><input type='checkbox' name='{escape(n)}' value='1'>"
                             f"{escape(text)}</label>" for n, (_, text) in
                             zip(f.export_names(), f.choices, strict=True))
        elif f.choices:
            inputs = "".join(f"<label><input type='radio' name='{escape(f.field_name)}' "
                             f"value='{escape(code)}'>{escape(text)}</label>"
                             for code, text in f.choices)
        else:
            inputs = f"<input name='{escape(f.field_name)}'>"
        rows.append(f"<p>{label}<br>{inputs}</p>")
    return "<form method='post'>" + "".join(rows) + "<button>Submit</button></form>"


def router(emulator: Emulator) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    def _entry(link_hash: str) -> tuple[ProjectContext, dict] | None:
        found = emulator.store.find_object("survey_hash", link_hash)
        if found is None:
            return None
        ctx = emulator.context(found[0], RESPONDENT)
        entry = by_hash(ctx, link_hash)
        return (ctx, entry) if entry else None

    @r.get("/surveys/")
    def show(request: Request, s: str = "", sq: str = "") -> HTMLResponse:
        if sq:
            return _queue(request, sq)
        found = _entry(s)
        if found is None:
            return _page("Survey not found", "<p>This survey link is not valid.</p>", 404)
        ctx, entry = found
        settings = ctx.design.surveys.get(entry["instrument"], {})
        title = settings.get("title") or ctx.design.form_label(entry["instrument"])
        if entry["response"] == 2:
            return _page(title, "<p>Thank you for your interest, but you have already "
                         "completed this survey.</p>")
        return _page(title, settings.get("instructions", "") + _form_html(ctx, entry["instrument"]))

    def _queue(request: Request, queue: str) -> HTMLResponse:
        found = emulator.store.find_object("survey_queue_hash", queue)
        if found is None:
            return _page("Survey queue not found", "<p>This link is not valid.</p>", 404)
        pid, ref = found
        ctx = emulator.context(pid, RESPONDENT)
        base = emulator.config.public_url or str(request.base_url)
        items = [f"<li><a href='{escape(survey_url(base, e['hash']))}'>"
                 f"{escape(ctx.design.form_label(e['instrument']))} ({escape(e['event'])})</a>"
                 f"{' - completed' if e['response'] == 2 else ''}</li>"
                 for e in queue_entries(ctx, ref["record"])]
        return _page("Survey queue", "<ul>" + "".join(items) + "</ul>")

    @r.post("/surveys/")
    async def submit(request: Request, s: str = "") -> HTMLResponse:
        found = _entry(s)
        if found is None:
            return _page("Survey not found", "<p>This survey link is not valid.</p>", 404)
        ctx, entry = found
        form = await request.form()
        values = {k: str(v) for k, v in form.items() if not k.startswith("__")}
        base = emulator.config.public_url or str(request.base_url)
        try:
            return await run_in_threadpool(_respond, ctx, entry, values, base)
        except ApiError as err:
            return _page("Please check your answers", f"<p>{escape(err.message)}</p>", 400)

    return r


def queue_entries(ctx: ProjectContext, record: str) -> list[dict]:
    """The record's surveys as a queue with every survey active lists them: each survey
    instrument designated for an event of the record's arm (instance 1), in event order;
    the participant entries (links) are made on first listing, as REDCap's are."""
    arms = {r.arm_num for r in ctx.store.records(ctx.pid) if r.record == record}
    events = [e for e in ctx.design.event_names()
              if not ctx.design.longitudinal or ctx.design.arm_of_event(e) in arms]
    surveys = ctx.design.surveys
    return [participant(ctx, Place(record, event, form, 1)) for event in events
            for form in ctx.design.forms_in_event(event)
            if form in surveys and surveys[form].get("survey_queue", "1") != "0"]


def _respond(ctx: ProjectContext, entry: dict, values: dict[str, str], base: str) -> HTMLResponse:
    place = Place.from_json(entry)
    settings = ctx.design.surveys.get(place.instrument, {})
    if entry["response"] == 2:
        return _page(settings.get("title", ""), "<p>Thank you for your interest, but you have "
                     "already completed this survey.</p>", 409)
    repeating = ctx.design.is_repeating_form(place.event, place.instrument)
    with ctx.store.transaction():
        outcome = save_form(ctx, FormSave(
            place.instrument, values=values, record=place.record, event=place.event,
            repeat_instance=place.instance if repeating or ctx.design.is_repeating_event(
                place.event) else None, complete="2", fire_det=False), redcap_url=base)
        key = (place.record, place.event, place.instrument if repeating else "",
               outcome.repeat_instance)
        ctx.store.put_value(ctx.pid, key, f"{place.instrument}_timestamp", ctx.store.now())
        mark_response(ctx, entry, 2)
    fire_after_commit(ctx, place, outcome.repeat_instance, base)
    return _page(settings.get("title", ""), settings.get("acknowledgement", "")
                 or "<p>Thank you for taking the survey.</p>")


def fire_after_commit(ctx: ProjectContext, place: Place, instance: int, base: str) -> None:
    """The DET goes out once the response is stored, as REDCap posts it after saving."""
    url = ctx.project.settings.get("det_url")
    if not url:
        return
    dag = next((r.dag for r in ctx.store.records(ctx.pid) if r.record == place.record), "")
    payload = det_payload(ctx, instrument=place.instrument, record=place.record,
                          event=place.event, repeat_instance=instance, complete="2", dag=dag,
                          username=RESPONDENT, redcap_url=base)
    fire_det(ctx, str(url), payload)
