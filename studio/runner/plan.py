"""Everything that can be known before the first pixel, resolved and checked once.

`plan_run` resolves the settings (every layer, the engine, the preset), checks the engine and its
model, the face weights, the output format and every output path, and decides up front what a
missing piece means (fall back, skip with a notice, or stop). `--dry-run` calls the same function,
so it fails exactly where and how the real run would.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from studio import weights
from studio.engines import engine_class
from studio.engines.base import DIFFUSION_SETTINGS
from studio.errors import EnvironmentProblem, OutputError, UsageError, WeightsMissing
from studio.io import InputSet, check_output_path, jpeg_quality_problem
from studio.messages import notice, warn
from studio.presets import get_preset
from studio.runner.choice import choose_engine, fallback_for
from studio.runner.jobs import Job, collect_jobs, default_report_path, sidecar_path
from studio.runner.reports import check_report_path
from studio.settings import Settings, resolve

NON_COMMERCIAL = "non-commercial"
UP_FRONT_SOURCES = ("fallback", "skipped")
CAPTION_PLACEHOLDER = "{caption}"
"""Kept in the rendered prompt when --caption is on; the engine fills it per image."""
"""Sources of values the up-front checks decided (a fallback engine, face restoration skipped)."""
FACES_NONE_SOURCE = "--faces none"
"""Source of protect_faces when an explicit --faces none turned it off."""


@dataclass
class Plan:
    """A run, decided: the settings and engine it uses, its jobs, its report, and the notes of decisions
    taken up front (a fallback, a skipped face restorer), which every output records."""

    settings: Settings
    engine: str
    jobs: list[Job] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)


def plan_run(
    cli: dict[str, Any],
    inputs: list[Path],
    output: Path | None = None,
    *,
    output_is_folder: bool = False,
    report: Path | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    config_file: Path | None = None,
    preset_dirs: list[Path] | None = None,
) -> Plan:
    """Resolve and check everything before any image is read. Raises UsageError (exit 2) or
    EnvironmentProblem (exit 3) for what stops the whole run; a job that cannot be written gets an error."""
    check_run_flags(skip_existing, overwrite)
    plan = check_settings(cli, config_file, preset_dirs)
    plan_outputs(plan, inputs, output, output_is_folder, report, overwrite, skip_existing)
    return plan


def check_run_flags(skip_existing: bool, overwrite: bool) -> None:
    if skip_existing and overwrite:
        raise UsageError("--skip-existing and --overwrite contradict each other; pick one")


def plan_outputs(
    plan: Plan,
    inputs: list[Path],
    output: Path | None,
    output_is_folder: bool,
    report: Path | None,
    overwrite: bool,
    skip_existing: bool,
) -> None:
    """The output side of a plan, wherever the engine runs: format, jobs and their paths, the report."""
    check_output_settings(plan.settings)
    plan.jobs = collect_jobs(inputs, output, plan.settings.format, output_is_folder)
    check_outputs(plan.jobs, plan.settings, overwrite, skip_existing)
    plan.report = report if report is not None or len(plan.jobs) < 2 else default_report_path(inputs, output)
    if plan.report is not None:
        check_report_path(plan.report, inputs, overwrite)


def check_settings(cli: dict[str, Any], config_file: Path | None = None, preset_dirs: list[Path] | None = None) -> Plan:
    """Every check that needs the settings alone (engine, model, faces, output format): a plan without
    jobs. `studio serve` calls it before queueing, so a request gets the verdict the CLI gives."""
    settings, engine = prepare_settings(cli, config_file, preset_dirs)
    plan = Plan(settings, engine)
    settle_engine(plan)
    check_faces(plan)
    check_output_settings(plan.settings)
    return plan


def settle_engine(plan: Plan) -> None:
    """The engine and its model must be usable: an unknown model stops the run (UsageError, from the
    engine's availability); missing weights or packages fall back when a fallback is set, else stop."""
    while not (availability := engine_class(plan.engine).availability(plan.settings)).ok:
        target = fallback_for(plan.settings, plan.engine)
        if target is None:
            hint = "" if plan.settings.engine == "auto" else " (or add --fallback fast)"
            raise EnvironmentProblem(f"--engine {plan.engine}: {availability.reason}{hint}")
        message = f"{plan.engine} cannot run ({availability.reason}); falling back to the {target} engine"
        notice(message)
        plan.notes.append(message)
        plan.settings = replace(plan.settings, engine=target, model=None)
        plan.settings.sources = {**plan.settings.sources, "engine": "fallback", "model": "fallback"}
        plan.engine = target
    engine = engine_class(plan.engine)
    ignored = [
        name
        for name in fields_in_order(DIFFUSION_SETTINGS - engine.used_settings())
        if plan.settings.source_of(name) == "cli"
    ]
    if ignored:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in ignored)
        steer = "only steer diffusion engines" if not engine.diffusion else "steer other diffusion engines"
        warn(f"{flags} {steer}; the {plan.engine} engine ignores them")
    _licence_notice(plan.settings.model or engine.default_model)
    engine.check_files(plan.settings)  # every key and shape of an official file, from its index


def fields_in_order(names: frozenset[str]) -> list[str]:
    """`names` in the order Settings declares them (the order of `studio restore --help`)."""
    return [field.name for field in fields(Settings) if field.name in names]


def check_faces(plan: Plan) -> None:
    """Face weights must be here: asked for on the command line -> stop (exit 3); suggested by a preset
    or config -> skip face restoration with a notice, and record that it did not run."""
    settings = plan.settings
    if settings.faces == "none":
        settle_face_protection(plan)
        return
    from studio.engines.faces.restorer import FaceRestorer, model_name

    availability = FaceRestorer.availability(settings)
    if not availability.ok:
        if settings.source_of("faces") == "cli":
            raise WeightsMissing(f"--faces {settings.faces}: {availability.reason}")
        origin = settings.source_of("faces")
        message = f"face restoration ({settings.faces}, from {origin}) skipped: {availability.reason}"
        if availability.reason.startswith("weights") and weights.find(model_name(settings)) is not None:
            message = (
                f"face restoration ({settings.faces}, from {origin}) skipped: weights missing; "
                f"get them with `studio weights pull {model_name(settings)}`"
            )
        warn(message)
        plan.notes.append(message)
        plan.settings = replace(settings, faces="none")
        plan.settings.sources = {**settings.sources, "faces": "skipped"}
        if plan.settings.source_of("protect_faces") == "default":  # recorded, so the reproduce command protects too
            plan.settings.sources["protect_faces"] = "skipped"
        settle_face_protection(plan)
        return
    _licence_notice(model_name(settings))


def settle_face_protection(plan: Plan) -> None:
    """No face model will run: decide whether faces are protected (--protect-faces, on by default).

    An explicit `--faces none` on the command line leaves faces to the engine, unless --protect-faces is
    given too. Protection needs the face detector: without one, a warning says faces are not protected.
    """
    settings = plan.settings
    if not settings.protect_faces:
        return
    if settings.source_of("faces") == "cli" and settings.source_of("protect_faces") == "default":
        plan.settings = replace(settings, protect_faces=False)
        plan.settings.sources = {**settings.sources, "protect_faces": FACES_NONE_SOURCE}
        return
    from studio.engines.faces.detect import detector_problem

    problem = detector_problem()
    if problem is not None:
        message = f"faces are not protected from invented detail (no face detector: {problem})"
        warn(message)
        plan.notes.append(message)
        plan.settings = replace(settings, protect_faces=False)
        plan.settings.sources = {**settings.sources, "protect_faces": "skipped"}


def _licence_notice(model: str | None) -> None:
    """One line when a model's licence forbids commercial use, so nobody runs it without knowing."""

    spec = weights.find(model) if model else None
    if spec is not None and NON_COMMERCIAL in spec.license.lower():
        notice(f"{spec.name} is licensed {spec.license}: do not use its results commercially")


def check_output_settings(settings: Settings) -> None:
    """Format and quality that the writer would refuse, refused before the work instead."""
    if problem := jpeg_quality_problem(settings.format, settings.quality, settings.force_jpeg):
        raise UsageError(f"--quality {settings.quality}: {problem}")


def check_outputs(jobs: list[Job], settings: Settings, overwrite: bool, skip_existing: bool) -> None:
    """Mark every job whose output (or sidecar) cannot be written; the run reports those files as failed."""
    inputs = InputSet([job.source for job in jobs])
    for job in jobs:
        if job.error or (skip_existing and job.output.exists()):
            continue
        try:
            check_output_path(job.output, inputs, overwrite)
            if settings.sidecar:
                check_output_path(sidecar_path(job.output), inputs, overwrite)
        except OutputError as exc:
            job.error = str(exc)


def prepare_settings(
    cli: dict[str, Any],
    config_file: Path | None = None,
    preset_dirs: list[Path] | None = None,
    choose: Callable[[Settings], str] = choose_engine,
) -> tuple[Settings, str]:
    """Resolve every layer, pick the engine, apply the preset for that engine and render its prompt.

    The preset's suggested parameters depend on the engine, so the engine is chosen first from the
    other layers; explicit flags still beat the preset. `choose` resolves `auto` (a remote run asks the
    machine that will run the job).
    """
    settings = resolve(cli, config_file)
    if settings.variables and not settings.preset:
        raise UsageError("--var fills a preset's template; add --preset NAME (studio presets list)")
    if settings.device != "auto":
        from studio.devices import resolve_device

        resolve_device(settings.device)  # a missing GPU is an environment error before any work starts
    engine_name = choose(settings)
    if settings.preset:
        preset = get_preset(settings.preset, preset_dirs or [])
        origin = f"preset:{preset.name}"
        settings = resolve(cli, config_file, preset.parameters_for(engine_name), origin)
        variables = settings.variables
        if settings.caption and "caption" in preset.variable_names and "caption" not in variables:
            variables = {**variables, "caption": CAPTION_PLACEHOLDER}  # the engine fills it per image
        positive, negative = preset.render(settings.prompt, variables)
        user_negative = settings.negative_prompt
        negative = ", ".join(filter(None, [negative, user_negative]))
        settings = replace(settings, prompt=positive, negative_prompt=negative)
        settings.sources = {**settings.sources, "prompt": origin, "negative_prompt": origin}
    return finalize_seed(settings), engine_name


def finalize_seed(settings: Settings) -> Settings:
    """Pick a concrete seed when none was given, so every output records the seed that made it."""
    if settings.seed is not None:
        return settings
    new = replace(settings, seed=secrets.randbelow(2**31))
    new.sources = {**settings.sources, "seed": "random"}
    return new
