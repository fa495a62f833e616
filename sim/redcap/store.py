"""SQLite state of the emulator: projects, tokens, records, data points, log, DET deliveries,
and project objects (users, survey links, files, reports) as JSON under (kind, key).

Data points are stored the way REDCap stores them: one row per (record, event,
repeating instrument, instance, field) with a non-blank value; a checked checkbox
choice is a row under its export name (`field___code` = "1").
One connection, serialised by a lock; `transaction()` makes a change all-or-nothing.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .design import ProjectDesign

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  project_id INTEGER PRIMARY KEY, title TEXT NOT NULL, design TEXT NOT NULL,
  settings TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  token TEXT PRIMARY KEY, project_id INTEGER, username TEXT NOT NULL, super INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  project_id INTEGER, record TEXT, arm_num INTEGER, dag TEXT NOT NULL DEFAULT '',
  seq INTEGER NOT NULL, PRIMARY KEY (project_id, record, arm_num));
CREATE TABLE IF NOT EXISTS data (
  project_id INTEGER, record TEXT, event TEXT, repeat_instrument TEXT, instance INTEGER,
  field TEXT, value TEXT NOT NULL,
  PRIMARY KEY (project_id, record, event, repeat_instrument, instance, field));
CREATE TABLE IF NOT EXISTS log (
  log_id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER, ts TEXT NOT NULL,
  username TEXT NOT NULL, kind TEXT NOT NULL, action TEXT NOT NULL, record TEXT NOT NULL,
  event TEXT NOT NULL, details TEXT NOT NULL, dag TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS log_by_time ON log (project_id, ts);
CREATE TABLE IF NOT EXISTS objects (
  project_id INTEGER, kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
  seq INTEGER PRIMARY KEY AUTOINCREMENT, UNIQUE (project_id, kind, key));
CREATE TABLE IF NOT EXISTS det_deliveries (
  delivery_id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER, ts TEXT NOT NULL,
  url TEXT NOT NULL, payload TEXT NOT NULL, status_code INTEGER, error TEXT NOT NULL);
"""

TS_FORMAT = "%Y-%m-%d %H:%M:%S"
# (record, event, repeat instrument, instance)
RowKey = tuple[str, str, str, int]


@dataclass(frozen=True)
class ProjectRow:
    project_id: int
    title: str
    design: ProjectDesign
    settings: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class RecordRow:
    record: str
    arm_num: int
    dag: str


class Store:
    def __init__(self, path: str | Path, clock: Callable[[], datetime] | None = None):
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self.clock = clock or (lambda: datetime.now(UTC))
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def now(self) -> str:
        return self.clock().astimezone(UTC).strftime(TS_FORMAT)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside happen or none does; nested use joins the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ---- projects and tokens ------------------------------------------------------------
    def create_project(self, title: str, design: ProjectDesign, settings: dict[str, Any],
                       project_id: int | None = None) -> int:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO projects (project_id, title, design, settings, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (project_id, title, json.dumps(design.to_json()), json.dumps(settings), self.now()))
            return int(cur.lastrowid or 0)

    def project(self, project_id: int) -> ProjectRow | None:
        rows = self._q("SELECT * FROM projects WHERE project_id = ?", (project_id,))
        if not rows:
            return None
        r = rows[0]
        return ProjectRow(r["project_id"], r["title"], ProjectDesign.from_json(json.loads(r["design"])),
                          json.loads(r["settings"]), r["created_at"])

    def project_ids(self) -> list[int]:
        return [r[0] for r in self._q("SELECT project_id FROM projects ORDER BY project_id")]

    def save_design(self, project_id: int, design: ProjectDesign) -> None:
        with self.transaction():
            self._conn.execute("UPDATE projects SET design = ? WHERE project_id = ?",
                               (json.dumps(design.to_json()), project_id))

    def update_settings(self, project_id: int, **changes: Any) -> None:
        with self.transaction():
            row = self.project(project_id)
            if row is None:
                raise KeyError(project_id)
            self._conn.execute("UPDATE projects SET settings = ? WHERE project_id = ?",
                               (json.dumps({**row.settings, **changes}), project_id))

    def add_token(self, project_id: int | None, username: str, token: str | None = None,
                  *, super_token: bool = False) -> str:
        token = (token or secrets.token_hex(32 if super_token else 16)).upper()
        with self.transaction():
            self._conn.execute("INSERT INTO tokens VALUES (?, ?, ?, ?)",
                               (token, project_id, username, int(super_token)))
        return token

    def token_owner(self, token: str) -> tuple[int | None, str, bool] | None:
        rows = self._q("SELECT * FROM tokens WHERE token = ?", (token.upper(),))
        return (rows[0]["project_id"], rows[0]["username"], bool(rows[0]["super"])) if rows else None

    def tokens_of(self, project_id: int) -> list[tuple[str, str]]:
        return [(r["token"], r["username"]) for r in
                self._q("SELECT token, username FROM tokens WHERE project_id = ?", (project_id,))]

    def delete_tokens_of(self, project_id: int, username: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM tokens WHERE project_id = ? AND username = ?",
                               (project_id, username))

    # ---- project objects: users, survey links, files, reports -------------------------------
    def put_object(self, project_id: int, kind: str, key: str, data: dict[str, Any]) -> None:
        """Insert or replace; a replaced object keeps its place in the order."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO objects (project_id, kind, key, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (project_id, kind, key) DO UPDATE SET data = excluded.data",
                (project_id, kind, key, json.dumps(data)))

    def objects(self, project_id: int, kind: str) -> dict[str, dict[str, Any]]:
        return {r["key"]: json.loads(r["data"]) for r in self._q(
            "SELECT key, data FROM objects WHERE project_id = ? AND kind = ? ORDER BY seq",
            (project_id, kind))}

    def object_keys(self, project_id: int, kind: str) -> list[str]:
        return [r["key"] for r in self._q(
            "SELECT key FROM objects WHERE project_id = ? AND kind = ? ORDER BY seq",
            (project_id, kind))]

    def get_object(self, project_id: int, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._q("SELECT data FROM objects WHERE project_id = ? AND kind = ? AND key = ?",
                       (project_id, kind, key))
        return json.loads(rows[0]["data"]) if rows else None

    def find_object(self, kind: str, key: str) -> tuple[int, dict[str, Any]] | None:
        """(project, data) of an object found by kind and key in any project."""
        rows = self._q("SELECT project_id, data FROM objects WHERE kind = ? AND key = ?",
                       (kind, key))
        return (rows[0]["project_id"], json.loads(rows[0]["data"])) if rows else None

    def delete_object(self, project_id: int, kind: str, key: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM objects WHERE project_id = ? AND kind = ? AND key = ?",
                               (project_id, kind, key))

    # ---- records and data ----------------------------------------------------------------
    def records(self, project_id: int) -> list[RecordRow]:
        return [RecordRow(r["record"], r["arm_num"], r["dag"]) for r in self._q(
            "SELECT record, arm_num, dag FROM records WHERE project_id = ? ORDER BY seq",
            (project_id,))]

    def add_record(self, project_id: int, record: str, arm_num: int, dag: str = "") -> None:
        with self.transaction():
            seq = self._q("SELECT COALESCE(MAX(seq), 0) + 1 FROM records WHERE project_id = ?",
                          (project_id,))[0][0]
            self._conn.execute("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?)",
                               (project_id, record, arm_num, dag, seq))

    def set_dag(self, project_id: int, record: str, dag: str) -> None:
        with self.transaction():
            self._conn.execute("UPDATE records SET dag = ? WHERE project_id = ? AND record = ?",
                               (dag, project_id, record))

    def data(self, project_id: int, records: list[str] | None = None) -> dict[RowKey, dict[str, str]]:
        sql = "SELECT * FROM data WHERE project_id = ?"
        args: list[Any] = [project_id]
        if records is not None:
            sql += f" AND record IN ({','.join('?' * len(records))})"
            args += list(records)
        out: dict[RowKey, dict[str, str]] = {}
        for r in self._q(sql, tuple(args)):
            key = (r["record"], r["event"], r["repeat_instrument"], r["instance"])
            out.setdefault(key, {})[r["field"]] = r["value"]
        return out

    def put_value(self, project_id: int, key: RowKey, field: str, value: str) -> None:
        with self.transaction():
            if value == "":
                self._conn.execute(
                    "DELETE FROM data WHERE project_id = ? AND record = ? AND event = ? AND "
                    "repeat_instrument = ? AND instance = ? AND field = ?", (project_id, *key, field))
            else:
                self._conn.execute("INSERT OR REPLACE INTO data VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (project_id, *key, field, value))

    def delete_data(self, project_id: int, record: str, *, event: str | None = None,
                    fields: list[str] | None = None, instance: int | None = None) -> int:
        sql = "DELETE FROM data WHERE project_id = ? AND record = ?"
        args: list[Any] = [project_id, record]
        if event is not None:
            sql, args = sql + " AND event = ?", [*args, event]
        if instance is not None:
            sql, args = sql + " AND instance = ?", [*args, instance]
        if fields is not None:
            sql += f" AND field IN ({','.join('?' * len(fields))})"
            args += fields
        with self.transaction():
            return self._conn.execute(sql, tuple(args)).rowcount

    def delete_record(self, project_id: int, record: str, arm_num: int | None = None) -> None:
        with self.transaction():
            if arm_num is None:
                self._conn.execute("DELETE FROM records WHERE project_id = ? AND record = ?",
                                   (project_id, record))
            else:
                self._conn.execute(
                    "DELETE FROM records WHERE project_id = ? AND record = ? AND arm_num = ?",
                    (project_id, record, arm_num))

    # ---- log ---------------------------------------------------------------------------
    def log(self, project_id: int, username: str, kind: str, action: str, *, record: str = "",
            event: str = "", details: str = "", dag: str = "") -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO log (project_id, ts, username, kind, action, record, event, details, "
                "dag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (project_id, self.now(), username, kind, action, record, event, details, dag))

    def log_entries(self, project_id: int) -> list[sqlite3.Row]:
        return self._q("SELECT * FROM log WHERE project_id = ? ORDER BY log_id DESC", (project_id,))

    def records_changed(self, project_id: int, begin: str | None, end: str | None) -> set[str]:
        """Records created or modified with begin <= time <= end (seconds, UTC), from the log."""
        sql = ("SELECT DISTINCT record FROM log WHERE project_id = ? AND "
               "kind IN ('record_add', 'record_edit')")
        args: list[Any] = [project_id]
        if begin:
            sql, args = sql + " AND ts >= ?", [*args, begin]
        if end:
            sql, args = sql + " AND ts <= ?", [*args, end]
        return {r[0] for r in self._q(sql, tuple(args))}

    # ---- Data Entry Trigger deliveries ----------------------------------------------------
    def record_det(self, project_id: int, url: str, payload: dict[str, str],
                   status_code: int | None, error: str) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO det_deliveries (project_id, ts, url, payload, status_code, error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, self.now(), url, json.dumps(payload), status_code, error))

    def det_deliveries(self, project_id: int) -> list[dict[str, Any]]:
        return [{"delivery_id": r["delivery_id"], "time": r["ts"], "url": r["url"],
                 "payload": json.loads(r["payload"]), "status_code": r["status_code"],
                 "error": r["error"]}
                for r in self._q("SELECT * FROM det_deliveries WHERE project_id = ? "
                                 "ORDER BY delivery_id", (project_id,))]
