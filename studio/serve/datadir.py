"""The data dir on disk: private to the server's user, checked at start, and kept in step with the database.

Each job folder holds its input, its result and `job.json`, a copy of its database row written before
the job is queued: a lost or damaged database is rebuilt from these, and a folder no job owns (an
upload cut off by a crash) is removed at start.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from studio.errors import EnvironmentProblem, InputError, os_problem
from studio.io import read_provenance
from studio.messages import notice
from studio.serve.config import ServeConfig
from studio.serve.store import DatabaseDamaged, JobStore

DIR_MODE = 0o700
FILE_MODE = 0o600
MANIFEST = "job.json"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
PROBE_BYTES = 1 << 16
HEADROOM_BYTES = 16 << 20
"""Free space wanted at start beyond one upload: room for its result and the database."""


def prepare(config: ServeConfig) -> None:
    """Create the data dir (0700) and check it can be written, with room for an upload: one line if not."""
    try:
        for folder in (config.data_dir, config.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)
        probe = config.data_dir / ".write-probe"
        try:
            with open(probe, "wb") as out:
                out.write(b"\0" * PROBE_BYTES)
                out.flush()
                os.fsync(out.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"{config.data_dir}: cannot write the data dir: {os_problem(exc) or exc}") from None
    free = shutil.disk_usage(config.data_dir).free
    needed = config.max_upload_bytes + HEADROOM_BYTES
    if free < needed:
        raise EnvironmentProblem(
            f"{config.data_dir}: only {free / 1e6:.1f} MB free; studio serve needs {needed / 1e6:.0f} MB for one "
            "upload and its result: free some space or choose another --data-dir"
        )


def open_store(config: ServeConfig) -> JobStore:
    """The jobs database, or one line saying it is damaged and what to do."""
    try:
        return JobStore(config.database)
    except DatabaseDamaged as exc:
        raise DatabaseDamaged(
            f"{config.database}: the jobs database is damaged ({exc}); move it aside "
            f"(mv {config.database} {config.database}.broken) and start again: the job folders in "
            f"{config.jobs_dir} are kept and the job list is rebuilt from them"
        ) from None


def write_manifest(
    folder: Path,
    job_id: str,
    lane: str,
    engine: str,
    name: str,
    source: Path,
    output: Path,
    settings: dict[str, Any],
    owner: str | None,
) -> None:
    """The job's row beside its files (0600, synced), for `recover`."""
    row = {
        "id": job_id,
        "lane": lane,
        "engine": engine,
        "name": name,
        "input_path": str(source),
        "output_path": str(output),
        "settings": settings,
        "owner": owner,
        "created": time.time(),
    }
    path = folder / MANIFEST
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(row, out)
        out.flush()
        os.fsync(out.fileno())


def recover(store: JobStore, config: ServeConfig) -> tuple[int, int]:
    """Rebuild the jobs the database lost from their folders (done if the result is there, else queued
    again) and remove folders no job owns. Returns (rebuilt, removed); says so in one line if either."""
    known = store.ids()
    rebuilt = removed = 0
    for folder in sorted(config.jobs_dir.iterdir()):
        if folder.name in known:
            continue
        if folder.is_dir() and _rebuild(store, folder):
            rebuilt += 1
            continue
        shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
        removed += 1
    if rebuilt or removed:
        notice(f"{config.jobs_dir}: rebuilt {rebuilt} jobs from their folders, removed {removed} that no job owns")
    return rebuilt, removed


def _rebuild(store: JobStore, folder: Path) -> bool:
    try:
        row = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        input_path, output_path = Path(row["input_path"]), Path(row["output_path"])
        if row["id"] != folder.name or input_path.parent.parent != folder or not input_path.is_file():
            return False
        store.add(
            row["id"],
            row["lane"],
            row["engine"],
            row["name"],
            input_path,
            output_path,
            row["settings"],
            owner=row.get("owner"),
            created=row["created"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if output_path.is_file():
        try:
            provenance = read_provenance(output_path)
        except InputError:
            provenance = None
        store.mark_done(row["id"], output_path.stat().st_mtime, provenance)
    return True


def restrict(folder: Path) -> None:
    """Every file of a job folder readable by the server's user only (writers may have used the umask)."""
    for path in folder.rglob("*"):
        os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
