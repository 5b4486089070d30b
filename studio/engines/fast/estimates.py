"""The fast engine's sizes: automatic tiles from free memory, and --dry-run's memory and time estimates."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from studio import weights
from studio.devices import device_type, free_memory_bytes
from studio.engines.fast.content import ANIME_MODEL, PHOTO_MODEL
from studio.ops.tiling import tile_grid
from studio.settings import Settings

if TYPE_CHECKING:
    import torch

CPU_TILE = 288
"""Largest automatic tile on CPU: keeps peak memory flat as images grow (measured in bench_fast.py)."""

GPU_TILE_MAX = 1024

_VALUES_PER_OUTPUT_PIXEL = {
    "RRDBNet": 12 * 64,
    "ESRGAN": 12 * 64,
    "SRVGGNetCompact": 64,
    "Compact": 64,
}
"""float32 values held per *output* pixel at the peak of a forward pass, measured with bench_fast.py:
x4plus 256->1024 peaked 3.2 GB above the process baseline in ncnn (winograd buffers and 64-channel
maps at output size, ~12 maps), animevideo-v3 ~0.2 GB (~45 values)."""
# transformers (SwinIR, HAT) and unknown networks: be conservative
_DEFAULT_VALUES_PER_OUTPUT_PIXEL = 16 * 64

MACS_PER_INPUT_PIXEL = {"RRDBNet": 17.9e6, "ESRGAN": 17.9e6}
"""Multiply-adds per input pixel of Real-ESRGAN x4plus (23 blocks), for GFLOP/s figures and estimates."""

CPU_FLOPS = 50e9
"""Rough CPU throughput for --dry-run time estimates, counted as 2 x the network's multiply-adds:
bench_fast.py measured 50-114 GFLOP/s for x4plus in ncnn (winograd) on one busy EPYC core."""


def auto_tile(arch: str, scale: int, device: torch.device | str, tiling: str = "supported") -> int:
    """A tile size that fits in about half the free memory; capped on CPU so memory stays flat."""
    if tiling == "internal":
        return 0
    per_input_pixel = _VALUES_PER_OUTPUT_PIXEL.get(arch, _DEFAULT_VALUES_PER_OUTPUT_PIXEL) * 4 * scale * scale
    kind = getattr(device, "type", device)
    if kind in ("cuda", "mps"):
        per_input_pixel //= 2  # fp16
    budget = free_memory_bytes(device) * 0.5
    side = int(math.sqrt(budget / per_input_pixel)) // 16 * 16
    cap = CPU_TILE if kind == "cpu" else GPU_TILE_MAX
    return max(64, min(side, cap))


def estimate(settings: Settings, height: int, width: int, scale: float, info: dict[str, Any]) -> dict[str, Any]:
    """`info` (the base plan) with the model, tile grid and rough memory/time, without loading any weights."""
    name = (
        " + ".join(settings.ensemble)
        if settings.ensemble
        else settings.model or f"{PHOTO_MODEL} or {ANIME_MODEL} (chosen by content)"
    )
    spec = weights.find(settings.model or PHOTO_MODEL)
    arch = spec.arch if spec else "unknown"
    model_scale = spec.scale if spec and spec.scale else 4
    device = device_type(settings.device)
    tile = settings.tile if settings.tile is not None else auto_tile(arch, model_scale, device)
    grid = tile_grid(height, width, tile, min(settings.tile_overlap, tile // 2) if tile else 0)
    side = max(t.height for t in grid), max(t.width for t in grid)
    peak = side[0] * side[1] * model_scale**2 * 4 * _VALUES_PER_OUTPUT_PIXEL.get(arch, _DEFAULT_VALUES_PER_OUTPUT_PIXEL)
    peak += height * width * model_scale**2 * 4 * 4  # the merged output and its weights
    computed = sum(t.height * t.width for t in grid)
    if settings.task != "sr":
        measured = "the file's JPEG quality" if settings.task == "jpeg" else "the measured noise"
        info["cleanup"] = f"a SwinIR {settings.task} model chosen by {measured}, at the original size"
        if scale <= 1:
            name = "none: --scale 1 runs no enlarging pass"
    info.update(
        model=name,
        task=settings.task,
        model_scale=model_scale,
        device=device,
        tile=tile,
        tiles=len(grid),
        memory_estimate_mb=round(peak / 2**20),
        extra_resize=scale != model_scale,
    )
    if arch in MACS_PER_INPUT_PIXEL and device == "cpu":
        info["time_estimate_s"] = round(computed * MACS_PER_INPUT_PIXEL[arch] * 2 / CPU_FLOPS, 1)
    return info
