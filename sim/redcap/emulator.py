"""The emulated REDCap server: its store, settings and fault switch, and project creation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .context import EmulatorConfig, ProjectContext
from .design import ArmDef, EventDef, FieldDef, ProjectDesign
from .dictionary import load_project_folder
from .faults import FaultSwitch
from .odm import read_odm
from .params import ApiError
from .records_import import apply_rows, plan_rows
from .store import Store
from .users import ensure_user

API_TOKEN = re.compile(r"[0-9A-Fa-f]{32}")
SUPER_TOKEN = re.compile(r"[0-9A-Fa-f]{64}")
DEFAULT_SETTINGS: dict[str, Any] = {"purpose": 0, "record_autonumbering_enabled": 1,
                                    "in_production": 0, "det_url": None}


class Emulator:
    def __init__(self, store: Store, config: EmulatorConfig | None = None):
        self.store = store
        self.config = config or EmulatorConfig()
        self.faults = FaultSwitch()

    # ---- projects ------------------------------------------------------------------------
    def create_project(self, title: str, design: ProjectDesign, *, username: str = "admin",
                       project_id: int | None = None, token: str | None = None,
                       settings: dict[str, Any] | None = None,
                       rows: list[dict[str, str]] | None = None) -> tuple[int, str]:
        """Create a project (and its first API token); optional data rows are imported too."""
        if token is not None and not API_TOKEN.fullmatch(token):
            raise ValueError("an API token is 32 hexadecimal characters")
        if project_id is not None and self.store.project(project_id) is not None:
            raise ValueError(f"project {project_id} already exists")
        with self.store.transaction():
            pid = self.store.create_project(title, design, {**DEFAULT_SETTINGS, **(settings or {})},
                                            project_id)
            api_token = self.add_token(pid, username, token)
            self.store.log(pid, username, "manage", "Manage/Design", details="Create project")
            if rows:
                ctx = self.context(pid, username)
                apply_rows(ctx, plan_rows(design, rows, now=self.store.clock), overwrite=False)
        return pid, api_token

    def create_from_folder(self, folder: str | Path, **kwargs: Any) -> tuple[int, str]:
        title = kwargs.pop("title", None) or Path(folder).resolve().parent.name
        return self.create_project(title, load_project_folder(folder), **kwargs)

    def create_from_odm(self, odm: str, *, title: str | None = None, **kwargs: Any) -> tuple[int, str]:
        project = read_odm(odm)
        settings = {**project.settings, **kwargs.pop("settings", {})}
        return self.create_project(title or project.title, project.design, settings=settings,
                                   rows=project.rows, **kwargs)

    def create_empty(self, title: str, *, longitudinal: bool, **kwargs: Any) -> tuple[int, str]:
        """A new REDCap project: the record ID on `my_first_instrument` (and one event)."""
        design = ProjectDesign(fields=[FieldDef("record_id", "my_first_instrument", "text",
                                                "Record ID")])
        if longitudinal:
            design.arms = [ArmDef(1, "Arm 1")]
            design.events = [EventDef("Event 1", 1, "event_1_arm_1", event_id=1)]
            design.mapping = {"event_1_arm_1": ["my_first_instrument"]}
        return self.create_project(title, design, **kwargs)

    def add_token(self, project_id: int, username: str, token: str | None = None) -> str:
        """An API token for `username`, who joins the project (full rights) if not yet in it."""
        project = self.store.project(project_id)
        if project is None:
            raise KeyError(project_id)
        with self.store.transaction():
            ensure_user(self.store, project_id, project.design, username)
            return self.store.add_token(project_id, username, token)

    # ---- callers ------------------------------------------------------------------------
    def context(self, project_id: int, username: str) -> ProjectContext:
        project = self.store.project(project_id)
        if project is None:
            raise KeyError(project_id)
        return ProjectContext(self.store, project, username, self.config)

    def authenticate(self, token: str) -> tuple[int | None, str, bool]:
        """(project id or None for a super token, user name, is super) or ApiError 401/403."""
        token = token.strip()
        if not token:
            raise ApiError(401, "You must provide an API token")
        if not (API_TOKEN.fullmatch(token) or SUPER_TOKEN.fullmatch(token)):
            raise ApiError(401, "The API token you provided is not valid")
        owner = self.store.token_owner(token)
        if owner is None:
            raise ApiError(403, "You do not have permissions to use the API")
        return owner
