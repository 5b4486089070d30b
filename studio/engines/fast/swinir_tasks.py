"""Artefact and noise removal at the original size: SwinIR's task models, chosen by a measurement.

SwinIR publishes one network per degradation level: JPEG artefact removal for quality 10/20/30/40
and denoising for Gaussian sigma 15/25/50, each in a colour and a greyscale version. Which one fits
is measured, not guessed: a JPEG's quality from its quantisation tables (`studio.io.jpeg_quality`),
noise from scikit-image's wavelet estimate of the noise standard deviation (Donoho's MAD rule). The
models live in the weights registry (configs/weights.toml) with `task` and `level` keys, so this
module lists no file names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio import weights
from studio.errors import ConfigError
from studio.ops.metrics import looks_grayscale

NOISE_SAMPLE = 1024
"""Noise is estimated on a central crop of at most this many pixels a side (full resolution: noise
statistics change when an image is resized)."""


@dataclass(frozen=True)
class TaskChoice:
    """The registry model for a task, the level it was trained for, what was measured, and why."""

    model: str
    level: int
    measured: float | None
    reason: str


def task_models(task: str, grey: bool) -> dict[int, str]:
    """{level: registry name} of the task's models for colour or greyscale images."""
    found: dict[int, str] = {}
    for spec in weights.registry():
        if spec.extra.get("task") != task or (int(spec.extra.get("channels", 3)) == 1) != grey:
            continue
        level = spec.extra.get("level")
        if not isinstance(level, int):
            raise ConfigError(f"weights '{spec.name}': a task model needs an integer 'level'")
        found[level] = spec.name
    return found


def missing_task_models(task: str) -> str | None:
    """Why `--task` cannot run at all (no model of the task on disk, the default install), or None. Which
    level an image needs is measured on its pixels, so a run with only some levels on disk is checked per image."""
    levels = task_models(task, grey=False)
    if any(
        weights.local_path(weights.get(name)) is not None
        for name in (*levels.values(), *task_models(task, True).values())
    ):
        return None
    gentlest = levels[max(levels)] if task == "jpeg" else levels[min(levels)]
    return f"weights missing: no --task {task} model is on disk; studio weights pull {gentlest} (or the level you need)"


def noise_sigma(image: np.ndarray) -> float:
    """Estimated Gaussian noise sigma on the 0-255 scale (the scale SwinIR's denoisers are named by)."""
    from skimage.restoration import estimate_sigma

    height, width = image.shape[:2]
    y0, x0 = max(0, (height - NOISE_SAMPLE) // 2), max(0, (width - NOISE_SAMPLE) // 2)
    crop = image[y0 : y0 + NOISE_SAMPLE, x0 : x0 + NOISE_SAMPLE]
    return float(estimate_sigma(crop, channel_axis=-1, average_sigmas=True)) * 255.0


def _nearest(levels: dict[int, str], value: float) -> int:
    return min(levels, key=lambda level: (abs(level - value), level))


def choose_task_model(task: str, image: np.ndarray, jpeg_quality: int | None) -> TaskChoice:
    """The model for `--task jpeg|denoise` on this image: nearest trained level to the measurement."""
    grey = looks_grayscale(image)
    levels = task_models(task, grey)
    kind = "greyscale" if grey else "colour"
    if not levels:
        raise ConfigError(f"the weights registry has no {kind} model for --task {task}")
    if task == "jpeg":
        if jpeg_quality is None:
            level = max(levels)
            return TaskChoice(
                levels[level], level, None, f"not a JPEG file: the gentlest {kind} model (quality {level})"
            )
        level = _nearest(levels, jpeg_quality)
        return TaskChoice(
            levels[level],
            level,
            float(jpeg_quality),
            f"JPEG quality {jpeg_quality} (quantisation tables): the {kind} quality-{level} model",
        )
    sigma = noise_sigma(image)
    level = _nearest(levels, sigma)
    return TaskChoice(
        levels[level],
        level,
        round(sigma, 2),
        f"noise sigma {sigma:.1f}/255 (wavelet estimate): the {kind} sigma-{level} model",
    )
