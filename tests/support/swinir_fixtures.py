"""Tiny random SwinIR networks in each official task configuration, saved as the release files are.

Random weights: they test loading (spandrel must detect the task and scale), padding, cropping and
model choice, not restoration quality. Each keeps the official configuration's distinguishing parts
(upsampler, window size 7 for JPEG and 8 otherwise, which fixes spandrel's img_range, channel count,
scale) and shrinks what spandrel reads from the weights without caring about its size: embed_dim 12
instead of 180 (60 for the lightweight models), one residual group of two blocks (the second block
carries the shifted-window mask spandrel reads img_size from) instead of six of six.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASK_CONFIGS: dict[str, dict[str, Any]] = {
    "classical_sr_x2": dict(upscale=2, window_size=8, img_size=16, upsampler="pixelshuffle"),
    "classical_sr_x3": dict(upscale=3, window_size=8, img_size=16, upsampler="pixelshuffle"),
    "classical_sr_x8": dict(upscale=8, window_size=8, img_size=16, upsampler="pixelshuffle"),
    "lightweight_sr_x4": dict(upscale=4, window_size=8, img_size=16, upsampler="pixelshuffledirect"),
    "real_sr_x4": dict(upscale=4, window_size=8, img_size=16, upsampler="nearest+conv"),
    "color_jpeg_car": dict(upscale=1, window_size=7, img_size=14, img_range=255.0, upsampler=""),
    "jpeg_car": dict(upscale=1, window_size=7, img_size=14, img_range=255.0, upsampler="", in_chans=1),
    "color_dn": dict(upscale=1, window_size=8, img_size=16, upsampler=""),
    "gray_dn": dict(upscale=1, window_size=8, img_size=16, upsampler="", in_chans=1),
}


def save_swinir(path: Path, config: str, seed: int = 0) -> Path:
    """A random SwinIR of the named task configuration, saved like the official files ({'params': ...})."""
    import torch
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    model = SwinIR(embed_dim=12, depths=[2], num_heads=[2], mlp_ratio=2.0, **TASK_CONFIGS[config])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": {k: v.contiguous() for k, v in model.state_dict().items()}}, path)
    return path
