"""An emulator of REDCap's API, faithful enough for PyCap's `redcap.Project` to use unchanged.

`create_app(db_path, ...)` builds the ASGI app (state in SQLite); `python -m sim.redcap serve`
runs it; `sim.redcap.testing.running_emulator` runs it inside a test. REDCap's API is at
`/api/`; the emulator's own endpoints (projects, tokens, DET, UI saves, faults) under
`/emulator/`.
"""

from .app import create_app
from .checks import DesignError
from .design import ProjectDesign
from .dictionary import load_project_folder
from .odm import read_odm

__all__ = ["DesignError", "ProjectDesign", "create_app", "load_project_folder", "read_odm"]
