"""The FastAPI app: the REST API under /api/v1, the browser page at /, health at /healthz.

Settings are checked by the runner's `check_settings`, exactly as `studio restore` checks its flags,
and uploads by `studio.io`, before a job is queued; errors come back as `{"detail": "one line"}`,
those of the machine too (507 disk full, 503 read-only or damaged data). The schema is /openapi.json
(no Swagger page: it would load scripts from a CDN).
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from studio import weights
from studio.engines import describe_engines
from studio.errors import EnvironmentProblem, StudioError, os_problem
from studio.io import FORMAT_EXTENSIONS
from studio.presets import load_presets
from studio.serve import datadir
from studio.serve.admission import SERVER_SETTINGS, checked_settings, job_settings, parse_settings
from studio.serve.config import ServeConfig
from studio.serve.security import guard, inline_script, security_headers, token_checker
from studio.serve.store import JobRecord, JobStore, new_job_id
from studio.serve.tokens import Client, TokenFile
from studio.serve.uploads import check_decodes, safe_stem, save_upload
from studio.serve.worker import WorkerPool, lane_for
from studio.version import __version__

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff"}
SETTINGS_HELP = 'JSON object of restore settings (the CLI options\' names), e.g. {"engine": "fast", "scale": 2}'
MULTIPART_SLACK = 1 << 20  # room for the multipart framing and the settings field beyond the file itself
DISK_FULL_STATUS = 507  # Insufficient Storage


@dataclass
class Service:
    """What the routes share."""

    config: ServeConfig
    store: JobStore
    pool: WorkerPool
    tokens: TokenFile


def create_app(config: ServeConfig) -> FastAPI:
    """The whole service over one data dir; workers start and stop with the app's lifespan. Checks the data
    dir and the database first, rebuilding jobs from their folders and removing folders no job owns."""
    datadir.prepare(config)
    store = datadir.open_store(config)
    datadir.recover(store, config)
    service = Service(config, store, WorkerPool(store, config), TokenFile(config.tokens_file))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.start_workers:
            service.pool.start()
        try:
            yield
        finally:
            service.pool.stop()
            store.close()

    app = FastAPI(
        title="studio",
        version=__version__,
        lifespan=lifespan,
        description="Image restoration jobs: upload, follow progress, download the result.",
        docs_url=None,
        redoc_url=None,
    )
    page_html = resources.files("studio.serve").joinpath("page.html").read_text(encoding="utf-8")
    client_of = token_checker(config, service.tokens)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(client_of)])
    body_limit = config.max_upload_bytes + MULTIPART_SLACK
    _add_error_handlers(app)

    @app.middleware("http")
    async def refuse_oversize(request: Request, call_next: Any) -> Any:
        """A declared Content-Length over the limit is refused before a byte is read (and in JSON)."""
        length = request.headers.get("content-length", "")
        if request.method == "POST" and length.isdigit() and int(length) > body_limit:
            return JSONResponse(
                {"detail": f"upload larger than the limit of {config.max_upload_bytes / 1e6:g} MB"}, status_code=413
            )
        return await call_next(request)

    app.middleware("http")(guard(config, security_headers(inline_script(page_html))))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "auth": config.token is not None or bool(service.tokens.entries()),
            "active_jobs": store.active_count(),
            "workers": service.pool.describe(),
            "max_upload_bytes": config.max_upload_bytes,
            "max_output_pixels": config.max_output_pixels,
        }

    _add_job_routes(api, service, body_limit)
    _add_catalogue_routes(api)
    _add_client_routes(api, service)
    app.include_router(api)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure a JSON one-liner: the client's mistakes 4xx, the machine's 503/507, never a traceback."""

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        """Any StudioError is one line: 503 for what the server lacks, else the client's 4xx."""
        status = getattr(exc, "status", 503 if isinstance(exc, EnvironmentProblem) else 422)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(OSError)
    async def machine_error(request: Request, exc: OSError) -> JSONResponse:
        problem = os_problem(exc) or f"{type(exc).__name__}: {exc.strerror or exc}"
        status = DISK_FULL_STATUS if exc.errno in datadir.DISK_FULL_ERRNOS else 503
        return JSONResponse({"detail": f"{problem} on the server; nothing was queued, retry later"}, status)

    @app.exception_handler(sqlite3.Error)
    async def database_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        full = "full" in str(exc)
        detail = "disk full on the server" if full else f"the server's job database failed ({exc})"
        return JSONResponse({"detail": f"{detail}; nothing was queued, retry later"}, DISK_FULL_STATUS if full else 503)


def _current_client(request: Request) -> Client:
    """Who sent the request, as the router's token check found (it runs first)."""
    return request.state.client


ClientDep = Annotated[Client, Depends(_current_client)]


def _add_job_routes(api: APIRouter, service: Service, body_limit: int) -> None:
    """Submit, follow, cancel and download jobs; a client token sees only its own jobs."""
    store = service.store

    @api.post("/jobs", status_code=202, max_body_size=body_limit)  # also bounds bodies sent without a length
    def create_job(
        client: ClientDep,
        file: Annotated[UploadFile, File(description="PNG, JPEG, WebP or TIFF; the type is read from the content")],
        settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None,
    ) -> JSONResponse:
        return _queue_job(file, settings, client, service)

    @api.get("/jobs")
    def list_jobs(client: ClientDep, limit: int = 50) -> list[dict[str, Any]]:
        owner = None if client.operator else client.name
        return [_describe(job, store) for job in store.recent(min(max(limit, 1), 500), owner)]

    @api.get("/jobs/{job_id}")
    def get_job(job_id: str, client: ClientDep) -> dict[str, Any]:
        return _describe(_job_or_404(store, job_id, client), store)

    @api.delete("/jobs/{job_id}")
    def cancel_job(job_id: str, client: ClientDep) -> dict[str, Any]:
        job = _job_or_404(store, job_id, client)
        if job.status in ("queued", "running"):
            job = store.request_cancel(job_id) or job
        return _describe(job, store)

    @api.get("/jobs/{job_id}/result", response_class=FileResponse)
    def get_result(job_id: str, client: ClientDep) -> FileResponse:
        job = _job_or_404(store, job_id, client)
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
    def get_input(job_id: str, client: ClientDep) -> FileResponse:
        job = _job_or_404(store, job_id, client)
        return FileResponse(job.input_path, media_type=MEDIA_TYPES.get(job.input_path.suffix))


def _queue_job(file: UploadFile, settings: str | None, client: Client, service: Service) -> JSONResponse:
    """Check the settings and the upload, store the job, wake a worker: 202 with the job, or one error.
    A refused or failed upload leaves nothing behind; the queue limit is checked and the job inserted in
    one database statement, so concurrent uploads cannot overshoot it."""
    config, store = service.config, service.store
    if store.active_count() >= config.queue_limit:  # early, before reading the upload; `add` decides
        raise _queue_full(service)
    requested = parse_settings(settings, config)
    resolved, engine_name = checked_settings(requested, config)
    job_id = new_job_id()
    folder = config.jobs_dir / job_id
    name = Path((file.filename or "upload").replace("\\", "/")).name or "upload"
    try:
        folder.mkdir(mode=datadir.DIR_MODE)
        source = save_upload(file.file, folder / "input", name, config.max_upload_bytes)
        check_decodes(source, name, config.max_pixels, resolved.scale, config.max_output_pixels)
        output = folder / f"{safe_stem(name)}_restored{FORMAT_EXTENSIONS[resolved.format]}"
        lane, stored = lane_for(engine_name), job_settings(requested, resolved.seed, config)
        datadir.write_manifest(folder, job_id, lane, engine_name, name, source, output, stored, client.name)
        if not store.add(job_id, lane, engine_name, name, source, output, stored, client.name, config.queue_limit):
            raise _queue_full(service)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        raise
    service.pool.wake()
    return JSONResponse(
        _describe(_job_or_404(store, job_id, client), store),
        status_code=202,
        headers={"Location": f"/api/v1/jobs/{job_id}"},
    )


def _queue_full(service: Service) -> HTTPException:
    limit = service.config.queue_limit
    return HTTPException(
        429, f"the queue is full ({limit} jobs); retry later", headers={"Retry-After": str(_retry_after(service))}
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


def _add_client_routes(api: APIRouter, service: Service) -> None:
    """What `studio restore --remote` asks before its first upload: who the server is, and its verdict on a job."""

    @api.get("/server")
    def server() -> dict[str, Any]:
        config = service.config
        return {
            "version": __version__,
            "device": service.pool.device_line(),
            "workers": service.pool.describe(),
            "queue_limit": config.queue_limit,
            "active_jobs": service.store.active_count(),
            "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
            "max_output_pixels": config.max_output_pixels,
        }

    @api.post("/check")
    def check(settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None) -> dict[str, Any]:
        """The verdict a job with these settings would get (engine, weights, faces), without an upload."""
        resolved, engine_name = checked_settings(parse_settings(settings, service.config), service.config)
        return {"engine": engine_name, "settings": resolved.to_dict()}


def _job_or_404(store: JobStore, job_id: str, client: Client) -> JobRecord:
    """The job, when this client may see it; another client's job is as absent as an unknown one."""
    job = store.get(job_id)
    if job is None or not (client.operator or job.owner == client.name):
        raise HTTPException(404, f"no job {job_id} (finished jobs expire after the server's --keep-hours)")
    return job


def _retry_after(service: Service) -> int:
    """Seconds until a queue slot is likely free: mean job time x queue length / workers."""
    mean = service.store.mean_seconds() or 5.0
    workers = max(1, sum(service.pool.describe().values()))
    return max(1, min(3600, math.ceil(mean * service.store.active_count() / workers)))


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
