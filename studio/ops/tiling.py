"""Tile grids, blend weights and tiled wrappers, so any callable can run on images bigger than memory.

One implementation for pixel and latent space alike: a grid of `Window`s is laid over an (H, W) size
in pixels or latent cells (`Window.scaled(k)` maps a window between the two), and blend weights are
plain arrays. `tiled_apply` runs a pixel-space callable (e.g. a super-resolution network of any
integer scale) tile by tile; the diffusion engines' latent tiling and tiled VAE use the same grid and
weights; `retry_tiles` lists the smaller tiles to try after an out-of-memory (`studio.devices.run_shrinking`
runs them).

The merge: each tile's output is multiplied by its blend weight and accumulated, together with the
weights; the sum is divided by the accumulated weight at the end. Feathered weights are zero in a
`margin` next to inner tile edges (where a network lacks context and its output is least reliable)
and ramp linearly across the rest of the overlap, so two neighbours cross-fade and sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

RETRY_TILES = (0, 512, 400, 256, 128)
"""Tile sizes tried in turn after an out-of-memory; 0 means the whole image in one piece."""


@dataclass(frozen=True)
class Window:
    """A rectangle [top, bottom) x [left, right) of an image or latent, in whatever unit its grid used."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) to cut this window out of an array: `x[..., rows, cols]`."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled(self, k: int) -> Window:
        """The same window in a space `k` times larger (latent -> pixels for a control image)."""
        return Window(self.top * k, self.bottom * k, self.left * k, self.right * k)

    def padded(self, pad: int, height: int, width: int) -> Window:
        """The window's context in a (height, width) area: grown by `pad` on every side and, where that
        would cross an edge, shifted back inside, so every context of a grid has the same size (the
        window plus 2 pad, or the whole side when shorter): the first tile's memory is every tile's."""
        top, bottom = _grown(self.top, self.bottom, pad, height)
        left, right = _grown(self.left, self.right, pad, width)
        return Window(top, bottom, left, right)


def _grown(start: int, end: int, pad: int, length: int) -> tuple[int, int]:
    size = min(length, end - start + 2 * pad)
    low = max(0, min(start - pad, length - size))
    return low, low + size


def spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(start, end) of the fewest windows of at most `tile` covering `length`, neighbours sharing `overlap`.

    The count is chosen first; the windows then share out exactly `length + (count - 1) * overlap`
    cells, so no work goes into overlaps wider than asked for. Sides are multiples of `multiple` (as
    even as that allows: they differ by at most one `multiple`) except the last window's, which also
    takes the remainder of a length that is no multiple: rounding every window up instead wasted up to
    `multiple` - 1 cells per window (a 250 line in 128 tiles with overlap 16 got three windows of 96,
    288 cells for the 282 needed; now 96, 96 and 90). A 512 line in 200 tiles with overlap 32 gets
    three windows of 192; with 288 tiles, two of 272.
    """
    if tile <= 0 or tile >= length:
        return [(0, length)]
    cap = tile // multiple * multiple
    if cap <= overlap:  # the multiple leaves no room for the overlap: any side will do
        multiple, cap = 1, tile
    count = math.ceil((length - overlap) / (cap - overlap))
    units, remainder = divmod(length + (count - 1) * overlap, multiple)
    base, extra = divmod(units, count)
    sizes = [(base + (i < extra)) * multiple for i in range(count)]
    sizes[-1] += remainder
    starts = [sum(sizes[:i]) - i * overlap for i in range(count)]
    return [(start, start + size) for start, size in zip(starts, sizes, strict=True)]


def tile_grid(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Window]:
    """Row-major windows of at most `tile` x `tile` covering (height, width), neighbours sharing >= `overlap`.

    `tile` 0 (or at least the size) gives one window. Window sides are multiples of `multiple` (for
    networks that downsample) except where a window ends at the far edge of a side that is no multiple
    (as the whole side would be, run untiled).
    """
    if height < 1 or width < 1:
        raise ValueError(f"tile_grid: size must be positive, got {height}x{width}")
    if tile > 0 and not (0 <= overlap < tile):
        raise ValueError(f"tile_grid: overlap {overlap} must be at least 0 and smaller than tile {tile}")
    return [
        Window(top, bottom, left, right)
        for top, bottom in spans(height, tile, overlap, multiple)
        for left, right in spans(width, tile, overlap, multiple)
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


def _bell(length: int, sigma: float) -> np.ndarray:
    position = (np.arange(length, dtype=np.float64) + 0.5) / length - 0.5
    return np.exp(-0.5 * (position / sigma) ** 2)


def blend_weights(
    window: Window,
    area: tuple[int, int],
    overlap: int,
    scale: int = 1,
    mode: str = "feather",
    margin: int = 0,
    sigma: float = 0.3,
) -> np.ndarray:
    """The (h*scale, w*scale) float32 weight of one window's output for a weight-normalised merge.

    feather: flat 1 inside and on the border of the (height, width) `area`, linear ramps only on sides
    shared with a neighbour (zero for `margin` cells at the edge), so neighbours cross-fade inside the
    overlap and sum to one. gaussian: a centred bell (`sigma` a fraction of each side), the
    MultiDiffusion-style choice; it never reaches zero, so any overlap works, but it mixes neighbours
    over the whole window. `overlap` and `margin` are in the grid's units; `scale` stretches to output units.
    """
    h, w = window.height * scale, window.width * scale
    if mode == "gaussian":
        return np.outer(_bell(h, sigma), _bell(w, sigma)).astype(np.float32)
    if mode != "feather":
        raise ValueError(f"blend_weights: unknown mode {mode!r}; expected feather or gaussian")
    height, width = area
    ov, mg = overlap * scale, margin * scale
    ys = _ramp(h, ov, mg, window.top > 0, window.bottom < height)
    xs = _ramp(w, ov, mg, window.left > 0, window.right < width)
    return np.outer(ys, xs)


class TiledMerger:
    """Weight-normalised accumulation of window outputs into one (..., H, W) float32 torch tensor."""

    def __init__(self, shape: Sequence[int], device: torch.device | str = "cpu") -> None:
        import torch

        self.sum = torch.zeros(tuple(shape), dtype=torch.float32, device=device)
        self.weight = torch.zeros(tuple(shape[-2:]), dtype=torch.float32, device=device)

    def add(self, values: torch.Tensor, weight: torch.Tensor | np.ndarray, window: Window) -> None:
        """Accumulate `values` (..., h, w) times `weight` (h, w) into `window` (output units)."""
        import torch

        wt = torch.as_tensor(weight, device=self.sum.device)
        rows, cols = window.slices
        self.sum[..., rows, cols].addcmul_(values.to(self.sum.device, torch.float32), wt)
        self.weight[rows, cols] += wt

    def result(self) -> torch.Tensor:
        """The merged tensor; cells no window reached (impossible with a tile_grid) would divide by zero."""
        return self.sum.div_(self.weight.clamp_(min=1e-8))


class NumpyMerger:
    """The same weight-normalised merge into a numpy (..., H, W) array, for callers that need no torch
    (the CPU ncnn path: importing torch costs seconds of a short run)."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.sum = np.zeros(tuple(shape), dtype=np.float32)
        self.weight = np.zeros(tuple(shape[-2:]), dtype=np.float32)

    def add(self, values: np.ndarray, weight: np.ndarray, window: Window) -> None:
        """Accumulate `values` (..., h, w) times `weight` (h, w) into `window` (output units)."""
        rows, cols = window.slices
        self.sum[..., rows, cols] += values * weight
        self.weight[rows, cols] += weight

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
        raise ValueError(f"tiled_apply: expected a (1, C, H, W) tensor, got shape {tuple(image.shape)}")
    _, _, height, width = image.shape
    if tile > 0:
        overlap = min(overlap, tile // 2)
    grid = tile_grid(height, width, tile, overlap)
    if progress:
        progress(0, len(grid))  # tiles are the steps: a caller sees how many before the first one ends
    if len(grid) == 1:
        out = fn(image)
        if progress:
            progress(1, 1)
        return out.astype(np.float32, copy=False) if isinstance(out, np.ndarray) else out.float()
    margin = max(0, overlap // 2 - 1) if margin is None else margin
    merger: TiledMerger | NumpyMerger | None = None
    for done, window in enumerate(grid, start=1):
        rows, cols = window.slices
        out = fn(image[:, :, rows, cols])
        if out.shape[-2:] != (window.height * scale, window.width * scale):
            raise ValueError(
                f"tiled_apply: fn returned {tuple(out.shape[-2:])} for a {window.height}x{window.width} tile"
                f" at scale {scale}"
            )
        if merger is None:
            shape = out.shape[:2] + (height * scale, width * scale)
            merger = NumpyMerger(shape) if isinstance(image, np.ndarray) else TiledMerger(shape, device=image.device)
        weight = blend_weights(window, (height, width), overlap, scale, "feather", margin)
        merger.add(out, weight, window.scaled(scale))
        if progress:
            progress(done, len(grid))
    assert merger is not None
    return merger.result()


def retry_tiles(start: int) -> list[int]:
    """The tile sizes to try from `start` on: `start` itself, then every smaller size in RETRY_TILES."""
    smaller = [t for t in RETRY_TILES if t != 0 and (start == 0 or t < start)]
    return [start, *smaller]


def tile_label(tile: int) -> str:
    """How a pixel tile size reads in a message."""
    return f"{tile}-pixel tiles" if tile else "the whole image"
