"""The one way a process gets a secret (a key, a token): from the environment
(`TAILOR_X`), from a mounted file (`TAILOR_X_FILE`, e.g. a Kubernetes secret), or — only
in the embedded stack on SQLite — from a file under `TAILOR_HOME/keys/` that the first
process creates (0600). Outside the embedded stack nothing is generated: two replicas on a
shared database minting their own keys could not read each other's data, and a read-only
root filesystem has nowhere to put one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class SecretMissing(RuntimeError):
    """No readable secret where one is required; `source` names the variable to fix."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source


@dataclass(frozen=True)
class Secret:
    value: bytes = b""  # as configured; the caller decodes and checks it
    source: str = ""  # which variable or file it came from (never the value)

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"


def load_secret(env_var: str, *, home: Path, embedded_file: str, allow_generate: bool,
                generate: Callable[[], bytes], environ: Mapping[str, str] | None = None) -> Secret:
    env = os.environ if environ is None else environ
    if env.get(env_var):
        return Secret(env[env_var].encode(), env_var)
    file_var = f"{env_var}_FILE"
    if env.get(file_var):
        path = Path(env[file_var])
        try:
            return Secret(path.read_bytes(), file_var)
        except OSError as err:
            raise SecretMissing(file_var, f"cannot read {path}: {err.strerror}") from None
    path = home / "keys" / embedded_file
    if not path.exists():
        if not allow_generate:
            raise SecretMissing(env_var, f"no secret: set {env_var} or {file_var} (one is "
                                "generated under TAILOR_HOME only for the embedded SQLite stack)")
        _create(path, generate())
    if os.name == "posix" and path.stat().st_mode & 0o077:  # made 0600; someone opened it up
        log.warning("secret.file_readable_by_others", path=str(path))
    return Secret(path.read_bytes(), str(path))


def _create(path: Path, value: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the stack made it first
        return
    with os.fdopen(fd, "wb") as out:
        out.write(value)
    log.info("secret.created", path=str(path))


def configured_secret(value: str | None, path: Path | None, *, source: str) -> str | None:
    """A secret that may be absent (an optional integration): the value, else the mounted
    file's content; None when neither is configured. A configured file that cannot be read
    is an error naming `source`, not a silent "absent"."""
    if value:
        return value
    if path is None:
        return None
    try:
        return path.read_text().strip() or None
    except OSError as err:
        raise SecretMissing(f"{source}_FILE", f"cannot read {path}: {err.strerror}") from None
