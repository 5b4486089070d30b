"""Batches: one job start to finish (read, restore, write, record), and the loop over jobs."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from studio.engines import engine_class
from studio.engines.base import DIFFUSION_SETTINGS, Engine, ProgressFn
from studio.errors import EnvironmentProblem, InputError, StudioError, UsageError, os_problem
from studio.io import (
    InputSet,
    check_output_budget,
    check_output_path,
    print_size,
    read_image,
    remove_stale_parts,
    write_image,
    write_text_atomic,
)
from studio.messages import notice, warn
from studio.runner.choice import EngineCache, engine_settings
from studio.runner.jobs import Job, sidecar_path
from studio.runner.plan import UP_FRONT_SOURCES, Plan
from studio.runner.quality import departures
from studio.runner.recipe import Restored, protection_line, restore_picture
from studio.runner.reports import BatchReport, JobResult
from studio.settings import Settings, command_args, layer_rank, setting_fields, spec_of


def reproduce_command(
    source: Path,
    output: Path,
    settings: Settings,
    engine: type[Engine],
    command: str = "restore",
    extra: tuple[str, ...] = (),
) -> str:
    """The command line that reproduces this output with `engine` (the one that ran, after any fallback).

    It names every value that differs from the built-in defaults or that a layer or an up-front
    decision set (so a user config cannot change it), and leaves out what the engine does not read.
    The preset is already rendered into the values, so it is left out too. Quoted for a POSIX shell; an
    input whose name starts with `-` follows `--`. `studio info` prints it with an output name that is free.
    `command` and `extra` (its own options) let `studio video` record its command line the same way.
    """
    defaults = Settings()
    ignored = DIFFUSION_SETTINGS - engine.used_settings()
    dashed = str(source).startswith("-")  # would read as an option: it goes last, after `--`
    args = ["studio", command, *([] if dashed else [str(source)]), "-o", str(output)]
    for item in setting_fields():
        name, value = item.name, getattr(settings, item.name)
        decided = layer_rank(settings.source_of(name)) > 0 or settings.source_of(name) in UP_FRONT_SOURCES
        if not spec_of(item).reproduce or name in ignored or value is None:
            continue
        if value == getattr(defaults, name) and not decided:
            continue
        if name == "model" and settings.ensemble:
            continue  # written as one --model per ensemble member
        args += command_args(item, value)
    args += list(extra)
    return shlex.join([*args, "--", str(source)] if dashed else args)


def process_job(
    job: Job,
    cache: EngineCache,
    all_inputs: InputSet,
    skip_existing: bool,
    overwrite: bool,
    progress: ProgressFn | None = None,
    debug: bool = False,
    notes: list[str] | None = None,
) -> JobResult:
    """One file, start to finish. Input and output problems become a failed result, not an exception.

    `notes` are the decisions taken up front (a fallback, a skipped face restorer): every output records them.
    """
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
        check_output_budget(job.source, picture.size, settings.scale, settings.max_output_pixels)
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
        restored = restore_picture(picture, cache, cache.primary, progress, notes or [])
        provenance, notes = restored.provenance, restored.notes
        ran = engine_class(provenance["engine"])
        ran_settings = replace(engine_settings(settings, ran.name, cache.primary), engine=ran.name)
        provenance["command"] = reproduce_command(job.source, job.output, ran_settings, ran)
        provenance["input"] = {"name": job.source.name, "size": list(picture.size), "bit_depth": picture.bit_depth}
        if protection := provenance.get("face_protection"):
            line = protection_line(protection["faces"], protection["left_out_by_face_model"])
            notice(f"{job.source.name}: {line}")
        # the quality report is still being measured in the background: the encoder asks for the
        # provenance only once the pixels are compressed (seconds: the job's time up to the write, as before)
        finish = partial(_with_quality, job, restored, result, round(time.perf_counter() - started, 3))
        write_image(job.output, restored.picture, settings.format, settings.quality, finish, settings.force_jpeg)
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
        if debug and not _machine_problem(exc):
            raise
        result.error = unexpected_error(job.source, exc)
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
    return result


def _with_quality(job: Job, restored: Restored, result: JobResult, seconds: float) -> dict[str, Any]:
    """The provenance completed with the quality report (and a warning when the result departs strongly)."""
    result.quality = {**restored.quality, "seconds": seconds}
    for message in departures(result.quality, faces_restored=restored.provenance.get("faces") is not None):
        warn(f"{job.source.name}: {message}")
        restored.notes.append(message)
    restored.provenance["quality"] = result.quality
    restored.provenance["print_size"] = print_size(restored.picture.size, restored.picture.dpi)
    return restored.provenance


def _machine_problem(exc: Exception) -> str | None:
    return os_problem(exc) if isinstance(exc, OSError) else None


def unexpected_error(source: Path, exc: Exception) -> str:
    """An error no check foresaw: what the machine lacks, in words ("disk full": a server's client cannot
    rerun with --debug), else a bug's one line."""
    if problem := _machine_problem(exc):
        where = f" ({Path(exc.filename).name})" if getattr(exc, "filename", None) else ""
        return f"{source}: {problem}{where}"
    return f"{source}: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details"


def remove_leftovers(plan: Plan) -> None:
    """Temporary files that an earlier run killed mid-write (kill -9, power loss) left beside this run's
    outputs, sidecars and report: removed, with one notice."""
    targets = [path for job in plan.jobs if not job.error for path in (job.output, sidecar_path(job.output))]
    removed = remove_stale_parts(targets + ([plan.report] if plan.report else []))
    if removed:
        folders = ", ".join(sorted({str(path.parent) for path in removed}))
        notice(f"removed {len(removed)} temporary file(s) an interrupted earlier run left in {folders}")


def run_batch(
    plan: Plan,
    skip_existing: bool = False,
    overwrite: bool = False,
    on_job_start: Callable[[Job, int, int], ProgressFn | None] | None = None,
    on_job_done: Callable[[JobResult], None] | None = None,
    debug: bool = False,
) -> BatchReport:
    """Run every job of a checked plan; a bad file is reported and the batch goes on.

    Environment problems stop it. Ctrl-C (KeyboardInterrupt, at any moment) stops it too, between two work
    units: the report then lists the finished files and marks the rest `interrupted` (no partial file is left:
    writes are atomic).
    """
    settings = plan.settings
    results: list[JobResult] = []
    interrupted = False
    try:
        remove_leftovers(plan)
        cache = EngineCache(settings, plan.engine)
        all_inputs = InputSet([job.source for job in plan.jobs])
        for index, job in enumerate(plan.jobs):
            progress = on_job_start(job, index, len(plan.jobs)) if on_job_start else None
            result = process_job(job, cache, all_inputs, skip_existing, overwrite, progress, debug, plan.notes)
            results.append(result)
            if on_job_done:
                on_job_done(result)
    except KeyboardInterrupt:
        interrupted = True
        results += [
            JobResult(input=str(job.source), output=str(job.output), status="interrupted")
            for job in plan.jobs[len(results) :]
        ]
    return BatchReport(results, settings.to_dict(), dict(settings.sources), interrupted=interrupted)
