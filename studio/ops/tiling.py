"""Tile grids, blend weights and tiled wrappers, so any callable can run on images bigger than memory.

Everything here is unit-agnostic: a grid is laid over an (H, W) size in pixels or latent cells, and
blend weights are plain arrays. `tiled_apply` runs a pixel-space callable (e.g. a super-resolution
network of any integer scale) tile by tile and merges the results by weight normalisation;
`retry_smaller_tiles` re-runs any tile-size-parametrised callable after an out-of-memory.

The merge: each tile's output is multiplied by its blend weight and accumulated, together with the
weights; the sum is divided by the accumulated weight at the end. Feathered weights are zero in a
`margin` next to inner tile edges (where a network lacks context and its output is least reliable)
and ramp linearly across the rest of the overlap, so two neighbours cross-fade and sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from studio.errors import OutOfMemory

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

RETRY_TILES = (0, 512, 400, 256, 128)
"""Tile sizes tried in turn after an out-of-memory; 0 means the whole image in one piece."""


@dataclass(frozen=True)
class Tile:
    """One window of the grid: rows y0:y1, columns x0:x1, and which of its sides touch a neighbour."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: bool = False
    bottom: bool = False
    left: bool = False
    right: bool = False

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of the fewest equal windows of at most `tile` covering `length` with >= `overlap` shared.

    The windows shrink to the smallest size that still covers the length, so no work is wasted on
    overlaps wider than asked for (a 512 line in 192 tiles with overlap 32 gets three windows of 192;
    with 288 tiles, two of 272).
    """
    if tile <= 0 or tile >= length:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count))
    span = length - size
    return [
        (start, start + size)
        for start in (round(i * span / (count - 1)) for i in range(count))
    ]


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Cover an (height, width) area with equal windows of at most `tile` x `tile`, neighbours sharing >= `overlap`.

    `tile` 0 (or at least the size) gives one window. Windows are spread evenly, so the overlaps are
    equal to within one unit, whatever the image size.
    """
    if height < 1 or width < 1:
        raise ValueError(f"tile_grid: size must be positive, got {height}x{width}")
    if tile > 0 and not (0 <= overlap < tile):
        raise ValueError(
            f"tile_grid: overlap {overlap} must be at least 0 and smaller than tile {tile}"
        )
    rows = _spans(height, tile, overlap)
    cols = _spans(width, tile, overlap)
    return [
        Tile(
            y0=y0,
            y1=y1,
            x0=x0,
            x1=x1,
            top=i > 0,
            bottom=i < len(rows) - 1,
            left=j > 0,
            right=j < len(cols) - 1,
        )
        for i, (y0, y1) in enumerate(rows)
        for j, (x0, x1) in enumerate(cols)
    ]


def _ramp(length: int, overlap: int, margin: int, start: bool, end: bool) -> np.ndarray:
    """1-D feather profile: 0 for `margin` cells at a shared side, then linear up to 1 across the overlap."""
    profile = np.ones(length, dtype=np.float32)
    width = max(overlap - 2 * margin, 1)
    distance = np.arange(length, dtype=np.float32)
    rise = np.clip((distance - margin + 0.5) / width, 0.0, 1.0)
    if start:
        profile = np.minimum(profile, rise)
    if end:
        profile = np.minimum(profile, rise[::-1])
    return profile


def blend_weights(
    tile: Tile,
    overlap: int,
    scale: int = 1,
    mode: str = "feather",
    margin: int = 0,
) -> np.ndarray:
    """The (h*scale, w*scale) float32 weight of one tile's output for a weight-normalised merge.

    feather: flat 1 inside and on the image border, linear ramps only on sides shared with a neighbour
    (zero for `margin` cells at the edge). gaussian: a centred bell (sigma = a quarter of the size), the
    MultiDiffusion-style choice for latent tiles; it never reaches zero, so any overlap works.
    `overlap` and `margin` are in the grid's units; `scale` stretches the weights to output units.
    """
    h, w = tile.height * scale, tile.width * scale
    if mode == "gaussian":
        ys = np.exp(-0.5 * ((np.arange(h) - (h - 1) / 2) / (h / 4)) ** 2)
        xs = np.exp(-0.5 * ((np.arange(w) - (w - 1) / 2) / (w / 4)) ** 2)
        return np.outer(ys, xs).astype(np.float32)
    if mode != "feather":
        raise ValueError(
            f"blend_weights: unknown mode {mode!r}; expected feather or gaussian"
        )
    ov, mg = overlap * scale, margin * scale
    ys = _ramp(h, ov, mg, tile.top, tile.bottom)
    xs = _ramp(w, ov, mg, tile.left, tile.right)
    return np.outer(ys, xs)


class TiledMerger:
    """Weight-normalised accumulation of tile outputs into one (C, H, W) torch tensor."""

    def __init__(
        self, channels: int, height: int, width: int, device: torch.device | str = "cpu"
    ) -> None:
        import torch

        self.sum = torch.zeros(
            (channels, height, width), dtype=torch.float32, device=device
        )
        self.weight = torch.zeros(
            (1, height, width), dtype=torch.float32, device=device
        )

    def add(self, values: torch.Tensor, weight: np.ndarray, y0: int, x0: int) -> None:
        """Accumulate `values` (C, h, w) with `weight` (h, w) at output position (y0, x0)."""
        import torch

        h, w = values.shape[-2:]
        wt = torch.from_numpy(weight).to(self.sum.device)
        self.sum[:, y0 : y0 + h, x0 : x0 + w].addcmul_(
            values.to(self.sum.device, torch.float32), wt
        )
        self.weight[:, y0 : y0 + h, x0 : x0 + w] += wt

    def result(self) -> torch.Tensor:
        """The merged tensor; cells no tile reached (impossible with a tile_grid) would divide by zero."""
        return self.sum.div_(self.weight.clamp_(min=1e-8))


class NumpyMerger:
    """The same weight-normalised merge into a numpy (C, H, W) array, for callers that need no torch
    (the CPU ncnn path: importing torch costs seconds of a short run)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.sum = np.zeros((channels, height, width), dtype=np.float32)
        self.weight = np.zeros((1, height, width), dtype=np.float32)

    def add(self, values: np.ndarray, weight: np.ndarray, y0: int, x0: int) -> None:
        h, w = values.shape[-2:]
        self.sum[:, y0 : y0 + h, x0 : x0 + w] += values * weight
        self.weight[:, y0 : y0 + h, x0 : x0 + w] += weight

    def result(self) -> np.ndarray:
        return self.sum / np.maximum(self.weight, 1e-8)


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    progress: Callable[[int, int], None] | None = None,
    margin: int | None = None,
) -> torch.Tensor:
    """Run `fn` (maps (1, C, h, w) to (1, C', h*scale, w*scale)) over `image` (1, C, H, W) in tiles.

    `tile` 0 or >= the image size runs `fn` once. Otherwise tiles overlap by `overlap` input pixels
    and are merged with feathered weights that ignore `margin` pixels at inner edges (default: all but
    a 2-pixel cross-fade in the middle of the overlap, since a convolutional network's output is least
    reliable where it lacked context). The result lives on `image`'s device in float32; a numpy
    `image` (with an `fn` on numpy arrays) gives a numpy result and never imports torch.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(
            f"tiled_apply: expected a (1, C, H, W) tensor, got shape {tuple(image.shape)}"
        )
    _, _, height, width = image.shape
    if tile > 0:
        overlap = min(overlap, tile // 2)
    grid = tile_grid(height, width, tile, overlap)
    if len(grid) == 1:
        out = fn(image)
        if progress:
            progress(1, 1)
        return out.astype(np.float32, copy=False) if isinstance(out, np.ndarray) else out.float()
    margin = max(0, overlap // 2 - 1) if margin is None else margin
    merger: TiledMerger | NumpyMerger | None = None
    for done, t in enumerate(grid, start=1):
        out = fn(image[:, :, t.y0 : t.y1, t.x0 : t.x1])
        if out.shape[-2:] != (t.height * scale, t.width * scale):
            raise ValueError(
                f"tiled_apply: fn returned {tuple(out.shape[-2:])} for a {t.height}x{t.width} tile at scale {scale}"
            )
        if merger is None:
            merger = (
                NumpyMerger(out.shape[1], height * scale, width * scale)
                if isinstance(image, np.ndarray)
                else TiledMerger(out.shape[1], height * scale, width * scale, device=image.device)
            )
        merger.add(
            out[0],
            blend_weights(t, overlap, scale, "feather", margin),
            t.y0 * scale,
            t.x0 * scale,
        )
        if progress:
            progress(done, len(grid))
    assert merger is not None
    return merger.result()[None]


def retry_tiles(start: int) -> list[int]:
    """The tile sizes to try from `start` on: `start` itself, then every smaller size in RETRY_TILES."""
    smaller = [t for t in RETRY_TILES if t != 0 and (start == 0 or t < start)]
    return [start, *smaller]


def retry_smaller_tiles(
    run: Callable[[int], T],
    start: int,
    device: torch.device | None = None,
    sizes: Sequence[int] | None = None,
    on_retry: Callable[[int, int], None] | None = None,
) -> tuple[T, int]:
    """Call `run(tile)`; after an out-of-memory free the cache and retry with the next smaller tile.

    Returns (result, tile used). Raises OutOfMemory when the smallest size fails too. `on_retry(old,
    new)` is told about each step down (the engine turns it into a notice).
    """
    import torch

    from studio.devices import empty_cache, is_out_of_memory

    dev = device or torch.device("cpu")
    tries = list(sizes) if sizes is not None else retry_tiles(start)
    for index, size in enumerate(tries):
        try:
            return run(size), size
        except (
            Exception
        ) as exc:  # torch.OutOfMemoryError, MemoryError or a RuntimeError saying so
            if not is_out_of_memory(exc):
                raise
        # outside the except block, so the failed attempt's frames (and tensors) are already released
        empty_cache(dev)
        if index + 1 < len(tries) and on_retry:
            on_retry(size, tries[index + 1])
    raise OutOfMemory(
        f"out of memory on {dev.type} even with {tries[-1]}-pixel tiles; use --device cpu or a smaller input"
    )
