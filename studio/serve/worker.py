"""The workers: one diffusion worker per GPU (one on CPU when there is none), CPU fast-path workers beside it.

Each worker keeps its engines, and so its loaded models, between jobs. A diffusion worker owns its GPU:
two diffusion pipelines never share one. Restoring itself is the runner's `process_job`, as in the CLI.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.engines import engine_class
from studio.engines.base import Engine, ProgressFn
from studio.errors import StudioError
from studio.io import InputSet, read_provenance
from studio.messages import warn
from studio.native import interrupt_check
from studio.runner import EngineCache, plan_run, process_job, reproduce_command
from studio.serve.config import ServeConfig
from studio.serve.datadir import restrict
from studio.serve.store import JobRecord, JobStore
from studio.settings import Settings

PROGRESS_INTERVAL_S = 0.2
EXPIRY_INTERVAL_S = 60.0


class JobCancelled(StudioError):
    """Raised from the progress callback to stop a running job at its next step or tile."""


def lane_for(engine_name: str) -> str:
    return "diffusion" if engine_class(engine_name).diffusion else "cpu"


class WarmEngines:
    """One worker's engines, kept between jobs. An engine is rebuilt only when what it loads changes."""

    def __init__(self) -> None:
        self._engines: dict[tuple[Any, ...], Engine] = {}

    def engine(self, settings: Settings) -> Engine:
        key = (settings.engine, settings.model, settings.device, settings.offload, settings.scheduler)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = engine_class(settings.engine)(settings)
        engine.settings = settings  # this job's prompt, seed, tiles...; the loaded model stays
        return engine


class JobEngines(EngineCache):
    """The runner's per-batch engine cache, drawing its engines from a worker's warm ones."""

    def __init__(self, settings: Settings, primary: str, warm: WarmEngines) -> None:
        super().__init__(settings, primary)
        self.warm = warm

    def build(self, settings: Settings) -> Engine:
        return self.warm.engine(settings)


class Worker(threading.Thread):
    def __init__(self, pool: WorkerPool, lane: str, device: str | None, index: int) -> None:
        super().__init__(name=f"studio-{lane}-{index}", daemon=True)
        self.pool, self.lane, self.device = pool, lane, device
        self.warm = WarmEngines()

    def run(self) -> None:
        while not self.pool.stopping.is_set():
            try:
                job = self.pool.store.claim_next(self.lane)
                if job is None:
                    self.pool.wait_for_work()
                    continue
                self.run_job(job)
            except (sqlite3.Error, OSError) as exc:  # the database's disk full or read-only: wait, retry
                warn(f"{self.name}: the job database failed ({exc}); retrying in 5 s")
                self.pool.stopping.wait(5.0)

    def run_job(self, job: JobRecord) -> None:
        """Restore one job; every outcome ends in done, failed or cancelled."""
        store = self.pool.store
        preset_dirs = list(self.pool.config.preset_dirs)
        try:
            plan = plan_run(job.settings, [job.input_path], job.output_path, overwrite=True, preset_dirs=preset_dirs)
            settings = plan.settings if self.device is None else replace(plan.settings, device=self.device)
            cache = JobEngines(settings, plan.engine, self.warm)
            with interrupt_check(self._cancel_check(job.id)):  # a native tile stops at once on cancel
                result = process_job(
                    plan.jobs[0],
                    cache,
                    InputSet([job.input_path]),
                    skip_existing=False,
                    overwrite=True,
                    progress=self._progress(job.id),
                    notes=plan.notes,
                )
            error = result.error
        except StudioError as exc:  # environment and usage problems: process_job passes them up
            error = str(exc)
        except Exception as exc:  # a bug fails this job, not the server
            error = f"internal error ({type(exc).__name__}: {exc})"
        if store.cancel_requested(job.id):
            job.output_path.unlink(missing_ok=True)
            store.finish(job.id, "cancelled")
        elif error is None:
            restrict(job.folder)
            store.finish(job.id, "done", provenance=client_provenance(job, settings))
        else:
            job.output_path.unlink(missing_ok=True)
            store.finish(job.id, "failed", error=client_error(error, job))

    def _cancel_check(self, job_id: str) -> Any:
        def check() -> None:
            if self.pool.store.cancel_requested(job_id):
                raise JobCancelled("cancelled")

        return check

    def _progress(self, job_id: str) -> ProgressFn:
        """Record steps (throttled) and stop the job when a cancel was asked for."""
        last = 0.0
        check = self._cancel_check(job_id)

        def progress(done: int, total: int) -> None:
            nonlocal last
            check()
            now = time.monotonic()
            if done >= total or now - last >= PROGRESS_INTERVAL_S:
                self.pool.store.set_progress(job_id, done, total)
                last = now

        return progress


def client_error(error: str, job: JobRecord) -> str:
    """The job's error as its client should read it: its file's name, no server paths."""
    return error.replace(str(job.input_path), job.name).replace(str(job.folder) + "/", "")


def client_provenance(job: JobRecord, settings: Settings) -> dict[str, Any]:
    """The result's provenance, its reproduce command naming the client's file, not the server's paths."""
    provenance = read_provenance(job.output_path) or {}
    engine = provenance.get("engine", settings.engine)
    used = replace(settings, engine=engine)
    provenance["command"] = reproduce_command(Path(job.name), Path(job.output_path.name), used, engine_class(engine))
    return provenance


def gpu_devices() -> list[str]:
    """One entry per CUDA GPU, for one diffusion worker each."""
    import torch

    return [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def device_line(gpus: list[str]) -> str:
    """'cuda:0 (NVIDIA H100 80GB HBM3)' per GPU, or 'cpu'."""
    if not gpus:
        return "cpu"
    import torch

    return ", ".join(f"{gpu} ({torch.cuda.get_device_name(gpu)})" for gpu in gpus)


class WorkerPool:
    def __init__(self, store: JobStore, config: ServeConfig) -> None:
        self.store, self.config = store, config
        self.stopping = threading.Event()
        self._work = threading.Condition()
        self.workers: list[threading.Thread] = []

    def start(self) -> None:
        self.store.requeue_interrupted()
        self.store.expire(self.config.keep_seconds)
        gpus = gpu_devices()
        self.workers = [Worker(self, "diffusion", device, i) for i, device in enumerate(gpus or [None])]
        self.workers += [Worker(self, "cpu", None, i) for i in range(self.config.cpu_workers)]
        self.workers.append(threading.Thread(target=self._expire_loop, name="studio-expiry", daemon=True))
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a job still running stays `running` and is queued again on the next start."""
        self.stopping.set()
        self.wake()
        for worker in self.workers:
            worker.join(timeout)

    def wake(self) -> None:
        with self._work:
            self._work.notify_all()

    def wait_for_work(self, timeout: float = 1.0) -> None:
        with self._work:
            self._work.wait(timeout)

    def device_line(self) -> str:
        """Where diffusion jobs run, for clients' provenance."""
        return device_line([w.device for w in self.workers if isinstance(w, Worker) and w.device])

    def describe(self) -> dict[str, int]:
        lanes = [w.lane for w in self.workers if isinstance(w, Worker)]
        return {"diffusion": lanes.count("diffusion"), "cpu": lanes.count("cpu")}

    def _expire_loop(self) -> None:
        interval = min(EXPIRY_INTERVAL_S, max(1.0, self.config.keep_seconds / 4))
        while not self.stopping.wait(interval):
            self.store.expire(self.config.keep_seconds)
