"""studio: diffusion-first image restoration.

Python API::

    import studio
    report = studio.restore(["old_photo.jpg"], output="out/", engine="fast", scale=4)
    settings = studio.load_settings(engine="sd-x4", preset="old-photo", prompt="a family portrait")

The runner is imported when these are called, not here: every `studio.*` import (the CLI's `--help`
included) runs this file first and must not pay for numpy and Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.version import __version__

if TYPE_CHECKING:
    from studio.runner import BatchReport
    from studio.settings import Settings

__all__ = ["__version__", "load_settings", "restore"]


def load_settings(config: str | Path | None = None, preset_dirs: Sequence[str | Path] = (), **options: Any) -> Settings:
    """Resolve settings exactly as the CLI does: defaults < configs < user config < preset < `options`."""
    from studio.runner import prepare_settings

    settings, _engine = prepare_settings(options, Path(config) if config else None, [Path(p) for p in preset_dirs])
    return settings


def restore(
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    *,
    config: str | Path | None = None,
    preset_dirs: Sequence[str | Path] = (),
    skip_existing: bool = False,
    overwrite: bool = False,
    **options: Any,
) -> BatchReport:
    """Restore files and folders; returns the batch report. Bad files are reported, not raised.

    Everything that can be checked before the first pixel is (as on the command line): a bad option
    raises UsageError, missing weights without a fallback raise an EnvironmentProblem.
    """
    from studio.runner import plan_run, run_batch

    plan = plan_run(
        options,
        [Path(p) for p in inputs],
        Path(output) if output else None,
        output_is_folder=output is not None and str(output).endswith(("/", "\\")),
        overwrite=overwrite,
        skip_existing=skip_existing,
        config_file=Path(config) if config else None,
        preset_dirs=[Path(p) for p in preset_dirs],
    )
    return run_batch(plan, skip_existing=skip_existing, overwrite=overwrite)
