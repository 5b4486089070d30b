"""`studio restore --dry-run`: the resolved settings with their sources, then the plan for every input."""

from __future__ import annotations

import json
from typing import Any

from studio.errors import StudioError


def print_plan(plan: Any, skip_existing: bool) -> int:
    """Print the plan of a checked run; returns how many files the real run would fail (unreadable input,
    output in the way), so that the dry run exits with the real run's code."""
    from rich.console import Console

    settings = plan.settings
    console = Console(soft_wrap=True)
    engine = print_settings(plan, console)
    failures = 0
    for job in plan.jobs:
        if skip_existing and not job.error and job.output.exists():
            console.print_json(json.dumps({"input": str(job.source), "skip": "output exists (--skip-existing)"}))
            continue
        step = _job_plan(job, engine, settings)
        failures += "error" in step
        console.print_json(json.dumps(step, default=str))
    if plan.report is not None:
        console.print(f"report: {plan.report}", markup=False, highlight=False)
    console.print("[dim]dry run: nothing was written[/]")
    return failures


def print_settings(plan: Any, console: Any, leave_out: tuple[str, ...] = ()) -> Any:
    """The resolved settings with their layers, the engine and the up-front notes; returns the engine."""
    from studio.engines import engine_class

    settings = plan.settings
    _print_settings(console, settings, leave_out)
    engine = engine_class(plan.engine)(settings)
    reason = engine.availability(settings).reason
    engine.probe()  # what the run loads first (e.g. the fast engine's --model files): the same verdict
    console.print(f"engine: [bold]{plan.engine}[/] (available{': ' + reason if reason else ''})")
    for note in plan.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    return engine


def _job_plan(job: Any, engine: Any, settings: Any) -> dict[str, Any]:
    """One input's plan (sizes, tiles, estimates from the engine), or the error the real run would report."""
    from studio.io import check_output_budget, read_image

    try:
        if job.error:
            raise StudioError(job.error)
        picture = read_image(job.source, settings.max_pixels)
        check_output_budget(job.source, picture.size, settings.scale, settings.max_output_pixels)
        height, width = picture.rgb.shape[:2]
        step = {
            "input": str(job.source),
            "output": str(job.output),
            "input_size": [width, height],
            **engine.plan(height, width, settings.scale),
        }
    except StudioError as exc:
        return {"input": str(job.source), "error": str(exc)}
    if picture.alpha is not None:
        step["alpha"] = f"kept, upscaled by {settings.alpha}"
    if picture.bit_depth == 16:
        step["bit_depth"] = 16
    return step


def _print_settings(console: Any, settings: Any, leave_out: tuple[str, ...] = ()) -> None:
    console.print("[bold]Resolved settings[/] (value, and the layer it came from)")
    for key, value in settings.to_dict().items():
        if key in leave_out:
            continue
        console.print(f"  {key} = {value!r}  [dim]({settings.source_of(key)})[/]", markup=True, highlight=False)


def print_remote_plan(plan: Any, skip_existing: bool, count: int) -> int:
    """The plan of a checked `--remote` run: settings, the remote's answers, each file; returns how many
    files the real run would fail, as `print_plan` does."""
    from rich.console import Console

    from studio.engines.base import output_size
    from studio.io import read_image

    console = Console(soft_wrap=True)
    _print_settings(console, plan.settings)
    console.print(f"remote: [bold]{plan.provider.target.label}[/] (answered the checks)", markup=True)
    console.print_json(json.dumps(plan.provider.describe(), default=str))
    console.print(f"engine: [bold]{plan.engine}[/] (on the remote); {count} job(s) would be sent", markup=True)
    failures = 0
    for job in plan.jobs:
        if skip_existing and not job.error and job.output.exists():
            console.print_json(json.dumps({"input": str(job.source), "skip": "output exists (--skip-existing)"}))
            continue
        try:
            if job.error:
                raise StudioError(job.error)
            width, height = read_image(job.source, plan.settings.max_pixels).size
            out_h, out_w = output_size(height, width, plan.settings.scale)
            step = {"input": str(job.source), "output": str(job.output), "input_size": [width, height]}
            step["output_size"] = [out_w, out_h]
        except StudioError as exc:
            step = {"input": str(job.source), "error": str(exc)}
            failures += 1
        console.print_json(json.dumps(step))
    if plan.report is not None:
        console.print(f"report: {plan.report}", markup=False, highlight=False)
    console.print("[dim]dry run: nothing was sent or written[/]")
    return failures
