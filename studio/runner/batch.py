"""Batches: one job start to finish (read, restore, write, record), and the loop over jobs."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from studio.engines.base import ProgressFn
from studio.errors import EnvironmentProblem, InputError, StudioError, UsageError
from studio.imageio import InputSet, check_output_path, read_image, write_image, write_text_atomic
from studio.messages import warn
from studio.runner.choice import EngineCache
from studio.runner.jobs import Job, sidecar_path
from studio.runner.recipe import restore_picture
from studio.runner.reports import BatchReport, JobResult
from studio.settings import Settings

LOW_PSNR_WARNING_DB = 20.0


def reproduce_command(source: Path, output: Path, settings: Settings) -> str:
    """The command line that reproduces this output: every value that differs from the defaults."""
    defaults = Settings().to_dict()
    args = ["studio", "restore", str(source), "-o", str(output)]
    for name, value in settings.to_dict().items():
        if name in ("preset", "variables", "sidecar") or value == defaults[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag)
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def process_job(job: Job, cache: EngineCache, engine_name: str, all_inputs: InputSet, skip_existing: bool,
                overwrite: bool, progress: ProgressFn | None = None, debug: bool = False) -> JobResult:
    """One file, start to finish. Input and output problems become a failed result, not an exception."""
    started = time.perf_counter()
    settings = cache.settings
    result = JobResult(input=str(job.source), output=str(job.output), status="failed")
    try:
        if job.error:
            raise InputError(job.error)
        if skip_existing and job.output.exists():
            result.status = "skipped"
            result.notes.append("output exists (--skip-existing)")
            return result
        check_output_path(job.output, all_inputs, overwrite)
        if settings.sidecar:
            check_output_path(sidecar_path(job.output), all_inputs, overwrite)
        picture = read_image(job.source, settings.max_pixels)
        result.input_size = list(picture.size)
        if picture.provenance:
            earlier = picture.provenance
            warn(
                f"{job.source.name} is already a studio output ({earlier.get('engine')}, "
                f"{earlier.get('output_size')}); upscaling an upscale piles up artefacts: restore the original "
                "once, at the final scale"
            )
            result.notes.append("input is an earlier studio output")
        for text in picture.notes:
            warn(f"{job.source.name}: {text}")
        restored = restore_picture(picture, cache, engine_name, progress)
        provenance, notes = restored.provenance, restored.notes
        provenance["command"] = reproduce_command(job.source, job.output, replace(settings, engine=provenance["engine"]))
        provenance["input"] = {"name": job.source.name, "size": list(picture.size), "bit_depth": picture.bit_depth}
        result.quality = {**restored.quality, "seconds": round(time.perf_counter() - started, 3)}
        psnr_db = result.quality["psnr_vs_lanczos_db"]
        if psnr_db is not None and psnr_db < LOW_PSNR_WARNING_DB:
            message = f"result departs strongly from the input (PSNR {psnr_db} dB vs Lanczos); check it for invented detail"
            warn(f"{job.source.name}: {message}")
            notes.append(message)
        provenance["quality"] = result.quality
        write_image(job.output, restored.picture, settings.format, settings.quality, provenance, settings.force_jpeg)
        if settings.sidecar:
            write_text_atomic(sidecar_path(job.output), json.dumps(provenance, indent=2, default=str))
        result.status = "ok"
        result.output_size = list(restored.picture.size)
        result.engine = provenance["engine"]
        result.model = provenance["model"]
        result.faces = restored.faces
        result.notes += notes
    except (EnvironmentProblem, UsageError):
        raise  # the same for every file: stop the batch
    except StudioError as exc:
        result.error = str(exc)
    except Exception as exc:  # a bug must not cost the rest of the batch; --debug shows the traceback
        if debug:
            raise
        result.error = f"{job.source}: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details"
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
    return result


# ------------------------------------------------------------------------------------------ batches


def run_batch(
    jobs: list[Job],
    settings: Settings,
    engine_name: str,
    skip_existing: bool = False,
    overwrite: bool = False,
    on_job_start: Callable[[Job, int, int], ProgressFn | None] | None = None,
    on_job_done: Callable[[JobResult], None] | None = None,
    debug: bool = False,
) -> BatchReport:
    """Run every job; a bad file is reported and the batch goes on. Environment problems stop it."""
    cache = EngineCache(settings, engine_name)
    all_inputs = InputSet([job.source for job in jobs])
    results: list[JobResult] = []
    for index, job in enumerate(jobs):
        progress = on_job_start(job, index, len(jobs)) if on_job_start else None
        result = process_job(job, cache, engine_name, all_inputs, skip_existing, overwrite, progress, debug)
        results.append(result)
        if on_job_done:
            on_job_done(result)
    return BatchReport(results=results, settings=settings.to_dict(), sources=dict(settings.sources))
