"""The FastAPI app: the REST API under /api/v1, the browser page at /, health at /healthz.

Settings are checked by the runner's `prepare_settings`, exactly as `studio restore` checks its flags,
and uploads by `studio.io`, before a job is queued; errors come back as `{"detail": "one line"}`.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from studio import weights
from studio.engines import describe_engines, engine_class
from studio.errors import EnvironmentProblem, StudioError
from studio.io import FORMAT_EXTENSIONS
from studio.presets import load_presets
from studio.runner import Plan, prepare_settings
from studio.runner.plan import check_faces
from studio.serve.config import ServeConfig
from studio.serve.store import JobRecord, JobStore, new_job_id
from studio.serve.uploads import UploadRejected, check_decodes, safe_stem, save_upload
from studio.serve.worker import WorkerPool, lane_for
from studio.settings import Settings
from studio.version import __version__

SERVER_SETTINGS = ("device", "max_pixels")
"""Restore settings the server decides (serve --max-pixels; one worker per GPU), not the client."""
CLIENT_SETTINGS = ("remote", "remote_token")
"""Restore settings that say where a client sends its jobs: a server never forwards a job elsewhere."""

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff"}
SETTINGS_HELP = 'JSON object of restore settings (the CLI options\' names), e.g. {"engine": "fast", "scale": 2}'
MULTIPART_SLACK = 1 << 20  # room for the multipart framing and the settings field beyond the file itself


def create_app(config: ServeConfig) -> FastAPI:
    """The whole service over one data dir; workers start and stop with the app's lifespan."""
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    pool = WorkerPool(store, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.start_workers:
            pool.start()
        try:
            yield
        finally:
            pool.stop()
            store.close()

    app = FastAPI(
        title="studio",
        version=__version__,
        lifespan=lifespan,
        description="Image restoration jobs: upload, follow progress, download the result.",
    )
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(_token_checker(config.token))])
    body_limit = config.max_upload_bytes + MULTIPART_SLACK

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        """Any StudioError is one line: 503 for what the server lacks, else the client's 4xx."""
        status = getattr(exc, "status", 503 if isinstance(exc, EnvironmentProblem) else 422)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def refuse_oversize(request: Request, call_next: Any) -> Any:
        """A declared Content-Length over the limit is refused before a byte is read (and in JSON)."""
        length = request.headers.get("content-length", "")
        if request.method == "POST" and length.isdigit() and int(length) > body_limit:
            return JSONResponse(
                {"detail": f"upload larger than the limit of {config.max_upload_bytes / 1e6:g} MB"}, status_code=413
            )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("studio.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "auth": config.token is not None,
            "active_jobs": store.active_count(),
            "workers": pool.describe(),
            "max_upload_bytes": config.max_upload_bytes,
        }

    _add_job_routes(api, store, pool, config, body_limit)
    _add_catalogue_routes(api)
    _add_client_routes(api, store, pool, config)
    app.include_router(api)
    return app


def _add_job_routes(api: APIRouter, store: JobStore, pool: WorkerPool, config: ServeConfig, body_limit: int) -> None:
    """Submit, follow, cancel and download jobs."""

    @api.post("/jobs", status_code=202, max_body_size=body_limit)  # also bounds bodies sent without a length
    def create_job(
        file: Annotated[UploadFile, File(description="PNG, JPEG, WebP or TIFF; the type is read from the content")],
        settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None,
    ) -> JSONResponse:
        return _queue_job(file, settings, store, pool, config)

    @api.get("/jobs")
    def list_jobs(limit: int = 50) -> list[dict[str, Any]]:
        return [_describe(job, store) for job in store.recent(min(max(limit, 1), 500))]

    @api.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return _describe(_job_or_404(store, job_id), store)

    @api.delete("/jobs/{job_id}")
    def cancel_job(job_id: str) -> dict[str, Any]:
        job = _job_or_404(store, job_id)
        if job.status in ("queued", "running"):
            job = store.request_cancel(job_id) or job
        return _describe(job, store)

    @api.get("/jobs/{job_id}/result", response_class=FileResponse)
    def get_result(job_id: str) -> FileResponse:
        job = _job_or_404(store, job_id)
        if job.status != "done" or not job.output_path.is_file():
            raise HTTPException(409, f"job {job_id} is {job.status}; the result exists once it is done")
        provenance = job.provenance or {}
        headers = {
            "X-Studio-Engine": str(provenance.get("engine")),
            "X-Studio-Model": str(provenance.get("model")),
            "X-Studio-Seed": str(provenance.get("settings", {}).get("seed")),
            "X-Studio-Input-Size": "x".join(map(str, provenance.get("input", {}).get("size", []))),
            "X-Studio-Output-Size": "x".join(map(str, provenance.get("output_size", []))),
            "X-Studio-Seconds": f"{(job.finished or 0) - (job.started or 0):.3f}",
        }
        return FileResponse(
            job.output_path,
            media_type=MEDIA_TYPES.get(job.output_path.suffix),
            filename=job.output_path.name,
            headers=headers,
        )

    @api.get("/jobs/{job_id}/input", response_class=FileResponse)
    def get_input(job_id: str) -> FileResponse:
        job = _job_or_404(store, job_id)
        return FileResponse(job.input_path, media_type=MEDIA_TYPES.get(job.input_path.suffix))


def _queue_job(
    file: UploadFile, settings: str | None, store: JobStore, pool: WorkerPool, config: ServeConfig
) -> JSONResponse:
    """Check the settings and the upload, store the job, wake a worker: 202 with the job, or one error."""
    if store.active_count() >= config.queue_limit:
        raise HTTPException(
            429,
            f"the queue is full ({config.queue_limit} jobs); retry later",
            headers={"Retry-After": str(_retry_after(store, pool))},
        )
    requested = _parse_settings(settings)
    resolved, engine_name = _checked_settings(requested, config)
    job_id = new_job_id()
    folder = config.jobs_dir / job_id
    name = Path((file.filename or "upload").replace("\\", "/")).name or "upload"
    try:
        source = save_upload(file.file, folder / "input", name, config.max_upload_bytes)
        check_decodes(source, name, config.max_pixels)
    except UploadRejected:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        raise
    output = folder / f"{safe_stem(name)}_restored{FORMAT_EXTENSIONS[resolved.format]}"
    store.add(
        job_id,
        lane_for(engine_name),
        engine_name,
        name,
        source,
        output,
        {**requested, "seed": resolved.seed, "max_pixels": config.max_pixels},
    )
    pool.wake()
    return JSONResponse(
        _describe(_job_or_404(store, job_id), store),
        status_code=202,
        headers={"Location": f"/api/v1/jobs/{job_id}"},
    )


def _add_catalogue_routes(api: APIRouter) -> None:
    """What the server offers: engines, presets, weights (the CLI's listings, as JSON)."""

    @api.get("/engines")
    def engines() -> list[dict[str, object]]:
        return describe_engines()

    @api.get("/presets")
    def presets() -> list[dict[str, Any]]:
        return [
            {"name": p.name, "description": p.description, "variables": p.variables, "engines": p.engines}
            for _, p in sorted(load_presets().items())
        ]

    @api.get("/weights")
    def weights_list() -> list[dict[str, Any]]:
        return [
            {
                "name": spec.name,
                "kind": spec.kind,
                "installed": weights.install_state(spec)[0],
                "license": spec.license,
                "good_for": spec.good_for,
            }
            for spec in weights.registry()
        ]


def _add_client_routes(api: APIRouter, store: JobStore, pool: WorkerPool, config: ServeConfig) -> None:
    """What `studio restore --remote` asks before its first upload: who the server is, and its verdict on a job."""

    @api.get("/server")
    def server() -> dict[str, Any]:
        return {
            "version": __version__,
            "device": pool.device_line(),
            "workers": pool.describe(),
            "queue_limit": config.queue_limit,
            "active_jobs": store.active_count(),
            "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
        }

    @api.post("/check")
    def check(settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None) -> dict[str, Any]:
        """The verdict a job with these settings would get (engine, weights, faces), without an upload."""
        resolved, engine_name = _checked_settings(_parse_settings(settings), config)
        check_faces(Plan(resolved, engine_name))
        return {"engine": engine_name, "settings": resolved.to_dict()}


def _token_checker(token: str | None) -> Any:
    """With a token, every API call needs `Authorization: Bearer TOKEN`."""

    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(
                401,
                "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def _parse_settings(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HTTPException(422, f"settings: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise HTTPException(422, 'settings: expected a JSON object such as {"engine": "fast", "scale": 2}')
    known = Settings().to_dict()
    for key in value:
        if key.replace("-", "_") not in known:
            raise HTTPException(
                422,
                f"settings: unknown key '{key}'; expected restore settings such as engine, "
                "scale, preset, prompt, strength, fidelity, faces, color_fix, seed",
            )
        if key.replace("-", "_") in SERVER_SETTINGS:
            raise HTTPException(422, f"settings: '{key}' is set by the server, not per job")
        if key.replace("-", "_") in CLIENT_SETTINGS:
            raise HTTPException(422, f"settings: '{key}' is the client's; a server runs its jobs itself")
    return value


def _checked_settings(requested: dict[str, Any], config: ServeConfig) -> tuple[Settings, str]:
    """The CLI's own resolution and checks, so the same messages (errors become 422, or 503 for what the
    server lacks, in the app's StudioError handler); then whether the engine can run here at all."""
    settings, engine_name = prepare_settings({**requested, "max_pixels": config.max_pixels})
    availability = engine_class(engine_name).availability(settings)
    if not availability.ok:
        raise HTTPException(503, f"engine {engine_name} cannot run here: {availability.reason}")
    return settings, engine_name


def _job_or_404(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id} (finished jobs expire after the server's --keep-hours)")
    return job


def _retry_after(store: JobStore, pool: WorkerPool) -> int:
    """Seconds until a queue slot is likely free: mean job time x queue length / workers."""
    mean = store.mean_seconds() or 5.0
    workers = max(1, sum(pool.describe().values()))
    return max(1, min(3600, math.ceil(mean * store.active_count() / workers)))


def _describe(job: JobRecord, store: JobStore) -> dict[str, Any]:
    base = f"/api/v1/jobs/{job.id}"
    provenance = job.provenance
    return {
        "id": job.id,
        "status": job.status,
        "name": job.name,
        "engine": job.engine,
        "progress": round(job.progress, 4),
        "step": job.step,
        "steps": job.steps,
        "position": store.position(job),
        "error": job.error,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "settings": {k: v for k, v in job.settings.items() if k not in SERVER_SETTINGS},
        "provenance": provenance,
        "command": provenance.get("command") if provenance else None,
        "input_url": f"{base}/input",
        "result_url": f"{base}/result" if job.status == "done" else None,
        "result_name": job.output_path.name,
    }


__all__ = ["create_app"]
