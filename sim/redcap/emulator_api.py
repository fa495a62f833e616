"""`/emulator/...`: what only the emulator offers, kept apart from REDCap's `/api/`.

Create projects and tokens, configure the Data Entry Trigger, save a form as a person
would (firing the DET, or not: a "lost trigger"), read DET deliveries, inject faults.
JSON in and out; errors are `{"detail": "..."}` with a 4xx status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .checks import DesignError
from .emulator import Emulator
from .faults import Fault
from .params import ApiError
from .ui import FormSave, save_form


class ProjectCreate(BaseModel):
    title: str | None = None
    dictionary_dir: str | None = Field(None, description="folder with data_dictionary.csv etc.")
    odm: str | None = Field(None, description="a REDCap project XML")
    project_id: int | None = None
    token: str | None = Field(None, description="32 hex characters; random when absent")
    username: str = "tailor"


class TokenCreate(BaseModel):
    username: str
    token: str | None = None


class DetConfig(BaseModel):
    url: str | None


class FormSaveIn(BaseModel):
    values: dict[str, str] = {}
    record: str | None = None
    event: str | None = None
    repeat_instance: int | Literal["new"] | None = None
    complete: Literal["0", "1", "2"] = "2"
    username: str = "site_user"
    dag: str = ""
    fire_det: bool = True


class ReportIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    fields: list[str] = Field(min_length=1)
    events: list[str] = []
    filter_logic: str = ""


class FaultIn(BaseModel):
    mode: Literal["error", "stall"]
    status: int = Field(500, ge=400, le=599)
    seconds: float = Field(0.0, ge=0, le=600)
    remaining: int | None = Field(None, ge=1)
    contents: list[str] = []


def router(emulator: Emulator) -> APIRouter:
    r = APIRouter(prefix="/emulator", tags=["emulator"])

    def ctx(project_id: int, username: str = "tailor") -> Any:
        try:
            return emulator.context(project_id, username)
        except KeyError:
            raise HTTPException(404, f"project {project_id} does not exist") from None

    @r.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/projects")
    def projects() -> list[dict[str, Any]]:
        return [{"project_id": p, "title": ctx(p).project.title}
                for p in emulator.store.project_ids()]

    @r.post("/projects", status_code=201)
    def create_project(body: ProjectCreate) -> dict[str, Any]:
        kwargs = {"project_id": body.project_id, "token": body.token, "username": body.username}
        try:
            if body.dictionary_dir:
                folder = Path(body.dictionary_dir)
                pid, token = emulator.create_from_folder(folder, title=body.title, **kwargs)
            elif body.odm:
                pid, token = emulator.create_from_odm(body.odm, title=body.title, **kwargs)
            else:
                raise HTTPException(422, "give dictionary_dir or odm")
        except DesignError as err:
            raise HTTPException(422, {"problems": err.problems}) from None
        except ValueError as err:
            raise HTTPException(409, str(err)) from None
        return {"project_id": pid, "token": token}

    @r.post("/projects/{project_id}/tokens", status_code=201)
    def create_token(project_id: int, body: TokenCreate) -> dict[str, str]:
        ctx(project_id)
        return {"token": emulator.add_token(project_id, body.username, body.token)}

    @r.post("/super-tokens", status_code=201)
    def create_super_token(body: TokenCreate) -> dict[str, str]:
        return {"token": emulator.store.add_token(None, body.username, body.token,
                                                  super_token=True)}

    @r.get("/projects/{project_id}/det")
    def get_det(project_id: int) -> DetConfig:
        return DetConfig(url=ctx(project_id).project.settings.get("det_url"))

    @r.put("/projects/{project_id}/det")
    def put_det(project_id: int, body: DetConfig) -> DetConfig:
        ctx(project_id)
        emulator.store.update_settings(project_id, det_url=body.url)
        # like REDCap, log that the trigger changed, never the URL (it carries a secret)
        emulator.store.log(project_id, "admin", "manage", "Manage/Design",
                           details="Modify project settings: Data Entry Trigger "
                           + ("set" if body.url else "removed"))
        return body

    @r.get("/projects/{project_id}/det/deliveries")
    def deliveries(project_id: int) -> list[dict[str, Any]]:
        ctx(project_id)
        return emulator.store.det_deliveries(project_id)

    @r.post("/projects/{project_id}/forms/{instrument}")
    async def save(project_id: int, instrument: str, body: FormSaveIn,
                   request: Request) -> dict[str, Any]:
        context = ctx(project_id, body.username)
        form = FormSave(instrument=instrument, values=body.values, record=body.record,
                        event=body.event, repeat_instance=body.repeat_instance,
                        complete=body.complete, dag=body.dag, fire_det=body.fire_det)
        base = emulator.config.public_url or str(request.base_url)
        try:
            outcome = await run_in_threadpool(save_form, context, form, redcap_url=base)
        except ApiError as err:
            raise HTTPException(err.status if err.status < 500 else 400, err.message) from None
        return {"record": outcome.record, "event": outcome.event, "instrument": instrument,
                "repeat_instance": outcome.repeat_instance, "det": outcome.det}

    @r.post("/projects/{project_id}/reports", status_code=201)
    def create_report(project_id: int, body: ReportIn) -> dict[str, Any]:
        """A report as the "Data Exports, Reports, and Stats" page would define it."""
        context = ctx(project_id)
        design = context.design
        names = set(design.field_by_name()) | {f"{f}_complete" for f in design.forms}
        bad = [f for f in body.fields if f not in names]
        bad += [e for e in body.events if e not in design.event_names()]
        if bad:
            raise HTTPException(422, f"unknown fields or events: {bad}")
        store = emulator.store
        report_id = 1 + max((int(k) for k in store.object_keys(project_id, "report")),
                            default=1000)
        store.put_object(project_id, "report", str(report_id), body.model_dump())
        return {"report_id": report_id}

    @r.get("/faults")
    def get_fault() -> dict[str, Any] | None:
        fault = emulator.faults.current()
        return fault.as_dict() if fault else None

    @r.put("/faults")
    def put_fault(body: FaultIn) -> dict[str, Any]:
        fault = Fault(body.mode, body.status, body.seconds, body.remaining, tuple(body.contents))
        emulator.faults.set(fault)
        return fault.as_dict()

    @r.delete("/faults", status_code=204)
    def clear_fault() -> None:
        emulator.faults.set(None)

    return r
