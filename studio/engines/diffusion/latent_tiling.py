"""Latent tiling for denoisers: overlapping windows whose predictions are blended with Gaussian weights.

Each step, the denoiser runs on every window and the outputs are averaged with weights that peak at
the window centre (StableSR's aggregation sampling; MultiDiffusion, Bar-Tal et al. 2023). Blending the
model output, not the sampled latent, keeps one scheduler step on the whole latent, so multistep and
ancestral samplers behave as without tiling and the random draws do not depend on the tiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from studio.engines.diffusion.guidance import Denoiser


@dataclass(frozen=True)
class Window:
    """A rectangle [top, bottom) x [left, right) of the latent."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def size(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with windows of `tile`, spread evenly, overlapping >= `overlap`."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be at least 0 and below the tile size {tile}")
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Row-major grid of windows over a (height, width) latent."""
    return [
        Window(top, min(top + tile, height), left, min(left + tile, width))
        for top in tile_starts(height, tile, overlap)
        for left in tile_starts(width, tile, overlap)
    ]


def gaussian_weights(height: int, width: int, sigma: float = 0.3) -> torch.Tensor:
    """(1, 1, h, w) separable Gaussian peaking at the centre; sigma is a fraction of each side."""
    import torch

    def axis(n: int) -> torch.Tensor:
        pos = (torch.arange(n, dtype=torch.float32) + 0.5) / n - 0.5
        return torch.exp(-0.5 * (pos / sigma) ** 2)

    return (axis(height)[:, None] * axis(width)[None, :])[None, None]


def tiled_denoiser(denoiser: Denoiser, height: int, width: int, tile: int, overlap: int) -> Denoiser:
    """Wrap `denoiser` so it runs window by window over a (height, width) latent and blends the results.

    With one window (tile >= latent) the denoiser is returned unchanged, so output equals untiled.
    """
    windows = tile_windows(height, width, tile, overlap)
    if len(windows) == 1:
        return denoiser
    weights: dict[tuple[int, int], torch.Tensor] = {}

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        import torch

        total: torch.Tensor | None = None
        weight_sum = torch.zeros((1, 1, height, width), dtype=torch.float32, device=x.device)
        for win in windows:
            rows, cols = win.slices
            pred = denoiser(x[..., rows, cols], t, win).float()
            if win.size not in weights:
                weights[win.size] = gaussian_weights(*win.size).to(x.device)
            weight = weights[win.size]
            if total is None:
                total = torch.zeros((x.shape[0], pred.shape[1], height, width), dtype=torch.float32, device=x.device)
            total[..., rows, cols] += pred * weight
            weight_sum[..., rows, cols] += weight
        return (total / weight_sum).to(x.dtype)  # type: ignore[operator]

    return denoise
