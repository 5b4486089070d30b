"""Jobs persisted in SQLite (in the data dir), inputs and results on disk beside it.

A restart finds queued jobs still queued and puts interrupted ones back in the queue; finished jobs
stay until they expire. One connection behind a lock: the server's writes are tiny and few. WAL with
synchronous=FULL: a commit is on disk when it returns, so neither kill -9 nor a power loss corrupts
the file or loses an acknowledged job. The file is checked on open: a damaged one is refused in words.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import EnvironmentProblem

FINISHED = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lane TEXT NOT NULL,
    engine TEXT NOT NULL,
    name TEXT NOT NULL,
    input_path TEXT NOT NULL,
    output_path TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    provenance TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, lane, created);
"""
ACTIVE = "status IN ('queued', 'running')"
FILE_MODE = 0o600  # the database, its WAL and shared-memory files (SQLite gives them the database's mode)


class DatabaseDamaged(EnvironmentProblem):
    """The jobs database cannot be read: its message says what SQLite found."""


@dataclass
class JobRecord:
    id: str
    status: str
    lane: str
    engine: str
    name: str
    input_path: Path
    output_path: Path
    settings: dict[str, Any]  # the request's settings, seed filled in: enough to rebuild them exactly
    created: float
    started: float | None
    finished: float | None
    progress: float
    step: int
    steps: int
    error: str | None
    provenance: dict[str, Any] | None
    cancel_requested: bool
    owner: str | None = None  # the token name that submitted it (None: no tokens)

    @property
    def folder(self) -> Path:
        return self.input_path.parent.parent


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    def __init__(self, database: Path) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_CREAT | os.O_RDWR, FILE_MODE))
        os.chmod(database, FILE_MODE)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(database), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # each commit synced: durable across a power loss
                found = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
                if found != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(found[:3]))
                self._db.executescript(_SCHEMA)
                columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
                if "owner" not in columns:  # a database from before named tokens
                    self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DatabaseDamaged(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- writing

    def add(
        self,
        job_id: str,
        lane: str,
        engine: str,
        name: str,
        input_path: Path,
        output_path: Path,
        settings: dict[str, Any],
        owner: str | None = None,
        limit: int | None = None,
        created: float | None = None,
    ) -> bool:
        """Queue a job; with `limit`, only while fewer than `limit` jobs are active, checked and inserted in
        one statement so that concurrent uploads can never overshoot it. Returns whether it was queued."""
        room = f"WHERE (SELECT COUNT(*) FROM jobs WHERE {ACTIVE}) < ?" if limit is not None else ""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO jobs (id, status, lane, engine, name, input_path, output_path, settings, created, owner) "
                f"SELECT ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ? {room}",
                (
                    job_id,
                    lane,
                    engine,
                    name,
                    str(input_path),
                    str(output_path),
                    json.dumps(settings),
                    created or time.time(),
                    owner,
                    *((limit,) if limit is not None else ()),
                ),
            )
            return cursor.rowcount == 1

    def mark_done(self, job_id: str, finished: float, provenance: dict[str, Any] | None) -> None:
        """A job rebuilt from its folder, whose result is already there."""
        self._run(
            "UPDATE jobs SET status = 'done', progress = 1, started = ?, finished = ?, provenance = ? WHERE id = ?",
            (finished, finished, json.dumps(provenance) if provenance is not None else None, job_id),
        )

    def claim_next(self, lane: str) -> JobRecord | None:
        """The oldest queued job of `lane`, now marked running; None when the lane is empty."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET status = 'running', started = ? WHERE id = ("
                "SELECT id FROM jobs WHERE status = 'queued' AND lane = ? ORDER BY created, rowid LIMIT 1"
                ") RETURNING *",
                (time.time(), lane),
            ).fetchone()
        return _record(row) if row else None

    def set_progress(self, job_id: str, step: int, steps: int) -> None:
        fraction = step / steps if steps else 0.0
        self._run(
            "UPDATE jobs SET progress = ?, step = ?, steps = ? WHERE id = ?", (min(fraction, 1.0), step, steps, job_id)
        )

    def finish(
        self, job_id: str, status: str, error: str | None = None, provenance: dict[str, Any] | None = None
    ) -> None:
        progress_sql = ", progress = 1" if status == "done" else ""
        self._run(
            f"UPDATE jobs SET status = ?, error = ?, provenance = ?, finished = ?{progress_sql} WHERE id = ?",
            (status, error, json.dumps(provenance) if provenance is not None else None, time.time(), job_id),
        )

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Queued jobs are cancelled at once; a running one is flagged and stops at its next step."""
        self._run(
            "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'",
            (time.time(), job_id),
        )
        self._run("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._run("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def requeue_interrupted(self) -> int:
        """Jobs left `running` by a stopped server start again from the beginning."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = 'queued', started = NULL, progress = 0, step = 0, steps = 0 "
                "WHERE status = 'running' AND cancel_requested = 0"
            )
            self._db.execute(
                "UPDATE jobs SET status = 'cancelled', finished = ? WHERE status = 'running'", (time.time(),)
            )
            return cursor.rowcount

    def expire(self, keep_seconds: float) -> int:
        """Delete finished jobs older than `keep_seconds`, files included. Returns how many went."""
        cutoff = time.time() - keep_seconds
        rows = self._run(f"SELECT * FROM jobs WHERE status IN {FINISHED} AND finished < ?", (cutoff,))
        for row in rows:
            self.delete(_record(row))
        return len(rows)

    def delete(self, job: JobRecord) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)
        self._run("DELETE FROM jobs WHERE id = ?", (job.id,))

    # -- reading

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._run("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def recent(self, limit: int = 100, owner: str | None = None) -> list[JobRecord]:
        """The newest jobs; of one owner when `owner` is given."""
        if owner is None:
            rows = self._run("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        else:
            rows = self._run("SELECT * FROM jobs WHERE owner = ? ORDER BY created DESC LIMIT ?", (owner, limit))
        return [_record(row) for row in rows]

    def ids(self) -> set[str]:
        return {row["id"] for row in self._run("SELECT id FROM jobs")}

    def position(self, job: JobRecord) -> int | None:
        """How many queued jobs of the same lane run before this one (0 = next); None unless queued."""
        if job.status != "queued":
            return None
        rows = self._run(
            "SELECT COUNT(*) AS ahead FROM jobs WHERE status = 'queued' AND lane = ? AND created < ?",
            (job.lane, job.created),
        )
        return int(rows[0]["ahead"])

    def active_count(self) -> int:
        return int(self._run(f"SELECT COUNT(*) AS n FROM jobs WHERE {ACTIVE}")[0]["n"])

    def mean_seconds(self, last: int = 20) -> float | None:
        """Mean run time of the last finished jobs, for Retry-After; None before the first one."""
        rows = self._run(
            "SELECT AVG(finished - started) AS mean FROM (SELECT finished, started FROM jobs "
            "WHERE status = 'done' ORDER BY finished DESC LIMIT ?)",
            (last,),
        )
        mean = rows[0]["mean"]
        return float(mean) if mean is not None else None


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        status=row["status"],
        lane=row["lane"],
        engine=row["engine"],
        name=row["name"],
        input_path=Path(row["input_path"]),
        output_path=Path(row["output_path"]),
        settings=json.loads(row["settings"]),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        progress=row["progress"],
        step=row["step"],
        steps=row["steps"],
        error=row["error"],
        provenance=json.loads(row["provenance"]) if row["provenance"] else None,
        cancel_requested=bool(row["cancel_requested"]),
        owner=row["owner"],
    )
