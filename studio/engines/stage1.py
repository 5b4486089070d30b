"""Stage 1 of the adapter engines (stablesr, supir): the input brought to the output size before diffusion.

`--stage1` means the same in every engine that reads it (and `--dry-run` reports it the same way):
- fast: the fast engine's upscale (Real-ESRGAN), lent by the runner; when it cannot run (weights
  missing, or no runner lent it), a Lanczos resize with a notice;
- lanczos: a Lanczos resize;
- none: the input as it is, which must already have the output size (--scale 1).
"""

from __future__ import annotations

import numpy as np

from studio.engines.base import Upscaler, output_size
from studio.errors import EngineUnavailable, UsageError, WeightsMissing
from studio.messages import notice
from studio.ops.resize import resize

FALLBACK = "lanczos"


def stage1_mode(setting: str | None, default: str) -> str:
    """The mode a run asks for: --stage1, else the engine's default (for --dry-run and provenance)."""
    return setting or default


def describe_stage1(setting: str | None, default: str) -> str:
    """What --dry-run says stage 1 will do."""
    mode = stage1_mode(setting, default)
    return f"{mode} (Lanczos, with a notice, when the fast engine cannot run)" if mode == "fast" else mode


def stage1_image(
    image: np.ndarray, scale: float, setting: str | None, default: str, upscaler: Upscaler | None
) -> tuple[np.ndarray, str]:
    """(the input at the output size, the mode that made it); see the module docstring."""
    height, width = image.shape[:2]
    out_h, out_w = output_size(height, width, scale)
    mode = stage1_mode(setting, default)
    if mode == "none":
        if (out_h, out_w) != (height, width):
            raise UsageError(
                f"--stage1 none: the input must already have the output size (use --scale 1, or --stage1 "
                f"fast|lanczos); got {width}x{height} for {out_w}x{out_h}"
            )
        return image, mode
    if mode == "fast":
        try:
            if upscaler is None:
                raise WeightsMissing("no fast engine was lent to this engine (use it through the runner)")
            return resize(upscaler(image, scale), out_h, out_w, "lanczos"), mode
        except EngineUnavailable as exc:
            notice(f"stage 1: the fast engine cannot run ({exc}); using Lanczos")
            mode = FALLBACK
    return resize(image, out_h, out_w, "lanczos"), mode
