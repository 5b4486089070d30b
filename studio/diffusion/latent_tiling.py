"""Latent tiling for denoisers, and the policy that picks the tile and overlap.

Each step the model runs on every window of the latent and the predictions are blended by weight
normalisation (MultiDiffusion, Bar-Tal et al. 2023; StableSR's aggregation sampling). Blending the
model output, not the sampled latent, keeps one scheduler step on the whole latent, so multistep and
ancestral samplers behave as without tiling and the random draws do not depend on the tiling. The
grid, windows and weights are the ones in `studio.ops.tiling`, shared with pixel-space tiling.

The policy (`choose_latent_tiles`) runs untiled when the whole latent fits, else takes the largest
tile that fits, then the fewest windows that cover the latent with LATENT_OVERLAP shared cells, and
shrinks them to share out exactly the cells that needs (multiples of 8, the far-edge window taking the
remainder): with 128-cell tiles that keeps UNet work within 1.3x of the no-overlap minimum for every
latent up to 912 cells a side (benchmarks/bench_tiling.py measures both the work and the seams).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from studio.ops.tiling import Window, blend_weights, tile_grid

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

__all__ = [
    "LATENT_BLEND",
    "LATENT_OVERLAP",
    "Window",
    "choose_latent_tiles",
    "retry_overlap",
    "tiled_denoiser",
    "unet_work",
]

LATENT_OVERLAP = 16
"""Latent cells shared by neighbouring windows: the smallest overlap without a visible seam in the benchmark."""
LATENT_BLEND = "feather"
"""Blend profile: zero weight on the outer quarter of the overlap, a linear cross-fade across the middle
half, full weight elsewhere (see the benchmark for the Gaussian alternative)."""


def retry_overlap(tile: int, first_tile: int, overlap: int) -> int:
    """The window overlap for an out-of-memory retry at `tile`: the planned one on the first attempt, then the
    shared overlap (or the planned one) capped at a quarter of the smaller window."""
    return overlap if tile == first_tile else min(overlap or LATENT_OVERLAP, tile // 4)


MIN_LATENT_TILE = 64
"""Smaller windows would be mostly overlap; below this the policy still returns this size."""


def tiled_denoiser(
    model: Callable[..., torch.Tensor], height: int, width: int, tile: int, overlap: int, blend: str = LATENT_BLEND
) -> Any:
    """Wrap `model(x, t, cond, window)` so it runs window by window over a (height, width) latent.

    The wrapper has the model's signature. Whatever sits between `t` and the window (a conditioning,
    or nothing for a guided denoiser `(x, t, window)`) goes through untouched; the model crops what of
    it is spatial with the window it gets (`Window.scaled(k)` for pixel-space maps). Windows are
    multiples of 8 (the UNet's downsampling). With one window the model itself is returned, so the
    result equals untiled. `blend` is a `studio.ops.tiling.blend_weights` mode.
    """
    windows = tile_grid(height, width, tile, overlap, multiple=8)
    if len(windows) == 1:
        return model
    margin = overlap // 4  # a window's outermost cells saw padding, not neighbours: they get no weight
    profiles = [blend_weights(w, (height, width), overlap, mode=blend, margin=margin) for w in windows]

    def denoise(x: torch.Tensor, t: torch.Tensor, *rest: Any) -> torch.Tensor:
        import torch

        from studio.ops.tiling import TiledMerger

        passed, window = (
            (rest[:-1], rest[-1]) if rest and (rest[-1] is None or isinstance(rest[-1], Window)) else (rest, None)
        )
        if window is not None or x.shape[-2:] != (height, width):
            raise ValueError(f"tiled_denoiser: built for a whole {height}x{width} latent, got {tuple(x.shape)}")
        merger: TiledMerger | None = None
        for win, profile in zip(windows, profiles, strict=True):
            rows, cols = win.slices
            pred = model(x[..., rows, cols], t, *passed, win)
            if merger is None:
                merger = TiledMerger((*pred.shape[:-2], height, width), device=x.device)
            merger.add(pred, torch.from_numpy(profile), win)
        assert merger is not None
        return merger.result().to(x.dtype)

    return denoise


def choose_latent_tiles(
    height: int,
    width: int,
    free_bytes: float,
    bytes_per_pixel: float,
    overlap: int = LATENT_OVERLAP,
    multiple: int = 8,
) -> tuple[int, int]:
    """(tile, overlap) in latent cells for a (height, width) latent; tile 0 means untiled.

    `bytes_per_pixel` is the model call's memory per latent cell (activations of one guided call);
    the whole latent runs at once when it fits in `free_bytes`, else the largest square tile that
    fits (a multiple of `multiple`, at least MIN_LATENT_TILE) with `overlap`. The grid then shares the
    latent out among its windows (`studio.ops.tiling.spans`), so the tile is an upper bound, not the
    window size.
    """
    if height * width * bytes_per_pixel <= free_bytes:
        return 0, 0
    side = math.isqrt(int(free_bytes / bytes_per_pixel)) // multiple * multiple
    tile = max(side, MIN_LATENT_TILE)
    return tile, min(overlap, tile // 4)


def unet_work(height: int, width: int, tile: int, overlap: int) -> int:
    """Latent cells the model processes per step under a tiling (overlaps counted each time they run)."""
    return sum(w.height * w.width for w in tile_grid(height, width, tile, overlap, multiple=8))
