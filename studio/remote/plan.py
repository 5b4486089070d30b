"""A remote run planned like a local one: the same layers, preset and output checks here, and the remote's
own verdict on the engine, weights and faces before the first upload (`--dry-run` asks the same questions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.remote.provider import Provider, RemotePlan
from studio.remote.replicate import Replicate
from studio.remote.runpod import RunPod
from studio.remote.studio_server import StudioServer
from studio.remote.target import RemoteTarget, parse_target
from studio.runner import choose_engine, plan_outputs, prepare_settings
from studio.runner.plan import check_run_flags
from studio.settings import Settings, resolve


def remote_target(cli: dict[str, Any], config_file: Path | None) -> RemoteTarget | None:
    """The run's `--remote` (from the flags or any config layer), or None for a local run."""
    return parse_target(resolve(cli, config_file))


def make_provider(target: RemoteTarget) -> Provider:
    return {"studio": StudioServer, "replicate": Replicate, "runpod": RunPod}[target.kind](target)


def plan_remote(
    target: RemoteTarget,
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
) -> RemotePlan:
    """Every check of a local plan, with the remote answering for the engine: reachable, token accepted,
    engine and weights there; then the outputs and the remote's upload limits per file."""
    check_run_flags(skip_existing, overwrite)
    provider = make_provider(target)
    provider.connect()
    settings, engine = prepare_settings(cli, config_file, preset_dirs, choose=_chooser(provider))
    plan = RemotePlan(settings, engine, provider=provider)
    provider.check(plan)
    plan_outputs(plan, inputs, output, output_is_folder, report, overwrite, skip_existing)
    for job in plan.jobs:
        if not job.error and not (skip_existing and job.output.exists()):
            job.error = provider.upload_problem(job)
    return plan


def _chooser(provider: Provider) -> Callable[[Settings], str]:
    """A named engine is checked here as locally (name, ensembles); only `auto` is the remote's to resolve."""

    def choose(settings: Settings) -> str:
        return choose_engine(settings) if settings.engine != "auto" else provider.choose_engine(settings)

    return choose


def jobs_to_send(plan: RemotePlan, skip_existing: bool) -> int:
    """How many jobs the remote will run (for the cost question)."""
    return sum(1 for job in plan.jobs if not job.error and not (skip_existing and job.output.exists()))
