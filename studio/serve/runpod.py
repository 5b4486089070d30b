"""studio as a RunPod serverless worker: `python -m studio.serve.runpod` (deploy/runpod/Dockerfile builds it).

The handler takes a job's `input`, either {"check": true, "settings": {...}} (the verdict a job with these
settings would get: engine, weights, faces; asked by `studio restore --remote runpod:ID` before its first
upload) or {"image": BASE64, "name": "photo.jpg", "settings": {...}}, and returns the restored PNG (base64)
with its provenance, or {"error": "one line"}, which RunPod reports as a failed job. Settings are checked as
`studio serve` checks them; engines stay loaded between jobs. Progress goes out as "step/steps".
"""

from __future__ import annotations

import base64
import binascii
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.engines import engine_class
from studio.engines.base import ProgressFn
from studio.errors import EnvironmentProblem, StudioError, UsageError
from studio.io import InputSet
from studio.runner import Plan, plan_run, prepare_settings, process_job
from studio.runner.plan import check_faces
from studio.serve.uploads import safe_stem, sniff_extension
from studio.serve.worker import JobEngines, WarmEngines, client_provenance, device_line, gpu_devices
from studio.settings import Settings
from studio.version import __version__

REFUSED_SETTINGS = ("device", "max_pixels", "remote", "remote_token")
"""The worker's own choices, and where a client sends its jobs: never taken from a job."""
PROGRESS_INTERVAL_S = 1.0
RETURN_LIMIT = 19_000_000
"""RunPod's workers return at most 20 MB per job (its SDK's check_return_size); the rest is the provenance."""

_WARM = WarmEngines()


def handler(job: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
    """One RunPod job: a check or a restoration; every failure is one line."""
    payload = job.get("input") or {}
    try:
        settings = _requested(payload.get("settings"))
        if payload.get("check"):
            return _check(settings)
        return _restore(payload, settings, progress)
    except StudioError as exc:
        if payload.get("check"):
            kind = "usage" if isinstance(exc, UsageError) else "environment"
            return {"ok": False, "kind": kind, "error": str(exc)}
        return {"error": str(exc)}


def _requested(settings: Any) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise UsageError('settings: expected a JSON object such as {"engine": "fast", "scale": 2}')
    known = Settings().to_dict()
    for key in settings:
        name = key.replace("-", "_")
        if name not in known:
            raise UsageError(f"settings: unknown key '{key}'")
        if name in REFUSED_SETTINGS:
            raise UsageError(f"settings: '{key}' is the worker's to set, not a job's")
    return settings


def _check(requested: dict[str, Any]) -> dict[str, Any]:
    """What `studio serve`'s /api/v1/check answers: the job's engine, if it can run here."""
    settings, engine_name = prepare_settings(requested)
    availability = engine_class(engine_name).availability(settings)
    if not availability.ok:
        raise EnvironmentProblem(f"engine {engine_name} cannot run here: {availability.reason}")
    check_faces(Plan(settings, engine_name))
    return {"ok": True, "engine": engine_name, "version": __version__, "device": device_line(gpu_devices()[:1])}


def _restore(payload: dict[str, Any], requested: dict[str, Any], progress: ProgressFn | None) -> dict[str, Any]:
    name = str(payload.get("name") or "upload")
    try:
        data = base64.b64decode(payload.get("image") or "", validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{name}: 'image' is not base64") from None
    extension = sniff_extension(data[:16])
    if extension is None:
        raise UsageError(f"{name}: not a PNG, JPEG, WebP or TIFF image (type checked by content)")
    with tempfile.TemporaryDirectory(prefix="studio-runpod-") as folder:
        source = Path(folder) / f"{safe_stem(name)}{extension}"
        source.write_bytes(data)
        output = Path(folder) / f"{safe_stem(name)}_restored.png"
        plan = plan_run({**requested, "format": "png"}, [source], output, overwrite=True)
        cache = JobEngines(plan.settings, plan.engine, _WARM)
        result = process_job(plan.jobs[0], cache, InputSet([source]), False, True, progress, notes=plan.notes)
        if result.error:
            raise StudioError(result.error.replace(str(source), name))
        image = base64.b64encode(output.read_bytes()).decode("ascii")
        if len(image) > RETURN_LIMIT:
            raise StudioError(
                f"{name}: the result ({len(image) / 1e6:.0f} MB in base64) is over RunPod's 20 MB return limit"
            )
        record = _Record(name, output)
        return {
            "image": image,
            "provenance": client_provenance(record, plan.settings),  # type: ignore[arg-type]
            "studio_version": __version__,
            "device": device_line(gpu_devices()[:1]),
        }


class _Record:
    """What `client_provenance` reads of a stored job: the client's file name and the output's path."""

    def __init__(self, name: str, output_path: Path) -> None:
        self.name, self.output_path = name, output_path


def _throttled(send: Any) -> ProgressFn:
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done >= total or now - last >= PROGRESS_INTERVAL_S:
            send(f"{done}/{total}")
            last = now

    return progress


def main() -> None:
    """Start the RunPod worker loop (needs the `runpod` package: the Dockerfile installs it)."""
    try:
        import runpod
    except ImportError:
        sys.exit("studio.serve.runpod needs RunPod's worker SDK: pip install runpod")

    def run(job: dict[str, Any]) -> dict[str, Any]:
        return handler(job, _throttled(lambda text: runpod.serverless.progress_update(job, text)))

    runpod.serverless.start({"handler": run})


if __name__ == "__main__":
    main()
