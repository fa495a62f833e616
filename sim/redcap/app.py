"""Composition root of the REDCap emulator: `create_app(db_path, ...)`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from . import api, emulator_api, survey_page
from .context import EmulatorConfig
from .emulator import Emulator
from .store import Store
from .users import ensure_user


def create_app(
    db_path: str | Path,
    *,
    dictionary_dir: str | Path | None = None,
    project_id: int | None = None,
    token: str | None = None,
    title: str | None = None,
    username: str = "tailor",
    super_token: str | None = None,
    det_url: str | None = None,
    config: EmulatorConfig | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The emulator as an ASGI app; state lives in the SQLite file `db_path`.

    With `dictionary_dir`, a project is created from that folder on first start (with
    `project_id` and `token` when given) and its DET URL set to `det_url`; a later start on
    the same database keeps the project and its data. `super_token` (64 hex characters)
    allows `content=project` creation through the API.
    """
    store = Store(db_path, clock)
    emulator = Emulator(store, config)
    if dictionary_dir is not None:
        bootstrap(emulator, dictionary_dir, project_id=project_id, token=token, title=title,
                  username=username, det_url=det_url)
    if super_token and store.token_owner(super_token) is None:
        store.add_token(None, username, super_token, super_token=True)
    app = FastAPI(title="REDCap API emulator", docs_url="/emulator/docs",
                  openapi_url="/emulator/openapi.json", redoc_url=None)
    app.state.emulator = emulator
    app.include_router(api.router(emulator))
    app.include_router(emulator_api.router(emulator))
    app.include_router(survey_page.router(emulator))
    return app


def bootstrap(emulator: Emulator, dictionary_dir: str | Path, *, project_id: int | None,
              token: str | None, title: str | None, username: str,
              det_url: str | None) -> tuple[int, str]:
    """Create the project from the folder unless it exists; make sure `token` opens it."""
    store = emulator.store
    existing = store.project(project_id) if project_id is not None else None
    if existing is None:
        pid, api_token = emulator.create_from_folder(
            dictionary_dir, title=title, project_id=project_id, token=token, username=username)
    else:
        pid = existing.project_id
        for _, owner_name in store.tokens_of(pid):  # databases from before users existed
            ensure_user(store, pid, existing.design, owner_name)
        owner = store.token_owner(token) if token else None
        if token and owner is None:
            emulator.add_token(pid, username, token)
        api_token = token or store.tokens_of(pid)[0][0]
    if det_url is not None:
        store.update_settings(pid, det_url=det_url)
    return pid, api_token
