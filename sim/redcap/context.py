"""What a handler needs to answer one call: the store, the project, the caller, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .design import ProjectDesign
from .store import ProjectRow, Store
from .users import dag_of, rights_of


@dataclass(frozen=True)
class EmulatorConfig:
    redcap_version: str = "14.5.10"
    # Address REDCap reports in DETs (`redcap_url`); None: the address the request came in on
    public_url: str | None = None
    det_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ProjectContext:
    store: Store
    project: ProjectRow
    username: str
    config: EmulatorConfig

    @property
    def pid(self) -> int:
        return self.project.project_id

    @property
    def design(self) -> ProjectDesign:
        return self.project.design

    def rights(self) -> dict[str, Any]:
        """The caller's effective rights (a role's when the caller has one)."""
        return rights_of(self.store, self.pid, self.design, self.username)

    def user_dag(self) -> str:
        """The caller's data access group ("" when the caller sees every record)."""
        return dag_of(self.store, self.pid, self.username)
