"""Settings for a run: every layer resolved, the engine chosen, the preset applied, the seed fixed."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.errors import UsageError
from studio.messages import warn
from studio.runner.choice import DIFFUSION_ENGINES, choose_engine
from studio.settings import Settings

DIFFUSION_ONLY = ("prompt", "negative_prompt", "steps", "guidance", "noise_level", "strength", "scheduler", "offload")


def prepare_settings(
    cli: dict[str, Any], config_file: Path | None = None, preset_dirs: list[Path] | None = None
) -> tuple[Settings, str]:
    """Resolve every layer, pick the engine, apply the preset for that engine and render its prompt.

    The preset's suggested parameters depend on the engine, so the engine is chosen first from the
    other layers; explicit flags still beat the preset.
    """
    from studio.settings import resolve

    settings = resolve(cli, config_file)
    if settings.variables and not settings.preset:
        raise UsageError("--var fills a preset's template; add --preset NAME (studio presets list)")
    if settings.device != "auto":
        from studio.devices import resolve_device

        resolve_device(settings.device)  # a missing GPU is an environment error before any work starts
    engine_name = choose_engine(settings)
    if settings.preset:
        from studio.presets import get_preset

        preset = get_preset(settings.preset, preset_dirs or [])
        origin = f"preset:{preset.name}"
        settings = resolve(cli, config_file, preset.parameters_for(engine_name), origin)
        positive, negative = preset.render(settings.prompt, settings.variables)
        user_negative = settings.negative_prompt
        settings = replace(settings, prompt=positive, negative_prompt=", ".join(filter(None, [negative, user_negative])))
        settings.sources = {**settings.sources, "prompt": origin, "negative_prompt": origin}
    if engine_name not in DIFFUSION_ENGINES:
        ignored = [f"--{name.replace('_', '-')}" for name in DIFFUSION_ONLY if settings.source_of(name) == "cli"]
        if ignored:
            warn(f"{', '.join(ignored)} only steer diffusion engines; the {engine_name} engine ignores them")
    return finalize_seed(settings), engine_name


def finalize_seed(settings: Settings) -> Settings:
    """Pick a concrete seed when none was given, so every output records the seed that made it."""
    if settings.seed is not None:
        return settings
    new = replace(settings, seed=secrets.randbelow(2**31))
    new.sources = {**settings.sources, "seed": "random"}
    return new
