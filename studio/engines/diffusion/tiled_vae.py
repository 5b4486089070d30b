"""VAE decoding in tiles whose GroupNorm layers all use one set of statistics.

Decoding tiles independently normalises each tile by its own statistics, so flat and busy tiles come
out in different tones. Here the statistics of every GroupNorm in the decoder are first pooled over the
tiles (up to 16, evenly spread) decoded normally without context (sums and sums of squares, so the
pool is the statistics of their union), then every tile is decoded again, with context, using those
statistics frozen: one tone for the whole image for about one extra decode. Tiles carry `pad` latent pixels
of context that are decoded and cut away, so convolutions see real neighbours. Decoded tiles go
straight into a CPU array: device memory stays that of one tile however large the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.engines.diffusion.latent_tiling import Window, tile_windows

if TYPE_CHECKING:
    import torch

GroupStats = dict[Any, tuple["torch.Tensor", "torch.Tensor"]]


def to_image(decoded: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) decoder output in [-1, 1] -> (H, W, 3) float32 in [0, 1], as diffusers post-processes."""
    return (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()


def decode(vae: Any, latents: torch.Tensor, tile: int = 0, pad: int = 16) -> np.ndarray:
    """Decode scaled-back latents (1, C, h, w) to an (h*f, w*f, 3) image; tile=0 or a small latent: one pass."""
    import torch

    height, width = latents.shape[-2:]
    with torch.no_grad():
        if tile <= 0 or (height <= tile and width <= tile):
            return to_image(vae.decode(latents, return_dict=False)[0])
        windows = tile_windows(height, width, tile, 0)
        stats = group_norm_stats(vae, latents, windows)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        out = np.empty((height * factor, width * factor, 3), dtype=np.float32)
        with frozen_group_norms(vae.decoder, stats):
            for win in windows:
                ctx = _padded(win, pad, height, width)
                part = to_image(vae.decode(latents[..., ctx.slices[0], ctx.slices[1]], return_dict=False)[0])
                top, left = (win.top - ctx.top) * factor, (win.left - ctx.left) * factor
                rows, cols = win.size[0] * factor, win.size[1] * factor
                out[win.top * factor : win.top * factor + rows, win.left * factor : win.left * factor + cols] = part[
                    top : top + rows, left : left + cols
                ]
        return out


def _padded(win: Window, pad: int, height: int, width: int) -> Window:
    return Window(max(0, win.top - pad), min(height, win.bottom + pad), max(0, win.left - pad), min(width, win.right + pad))


def _spread(values: list[int], count: int) -> set[int]:
    """`count` values evenly spread over the sorted list (all of them when there are fewer)."""
    if len(values) <= count:
        return set(values)
    return {values[round(i * (len(values) - 1) / (count - 1))] for i in range(count)} if count > 1 else {values[0]}


def group_norm_stats(vae: Any, latents: torch.Tensor, windows: list[Window], max_tiles: int = 16) -> GroupStats:
    """Per-group mean and variance at every decoder GroupNorm, pooled over tiles decoded normally (a grid
    of up to `max_tiles`, spread evenly over rows and columns); pooling sums and squares gives the statistics of their union, so
    with all tiles of a grid this costs one extra decode of the image."""
    import torch

    per_axis = max(1, math.isqrt(max_tiles))
    tops = _spread(sorted({w.top for w in windows}), per_axis)
    lefts = _spread(sorted({w.left for w in windows}), per_axis)
    sample = [w for w in windows if w.top in tops and w.left in lefts]
    sums: dict[Any, list[torch.Tensor]] = {}

    def record(module: torch.nn.GroupNorm, args: tuple[torch.Tensor, ...]) -> None:
        grouped = args[0].float().reshape(args[0].shape[0], module.num_groups, -1).transpose(0, 1).flatten(1)
        totals = torch.stack([grouped.sum(1), (grouped * grouped).sum(1)])
        count = torch.full((1, module.num_groups), float(grouped.shape[1]), device=grouped.device)
        entry = torch.cat([totals, count])
        sums[module] = [sums[module][0] + entry] if module in sums else [entry]

    norms = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    handles = [m.register_forward_pre_hook(record) for m in norms]
    try:
        for win in sample:
            vae.decode(latents[..., win.slices[0], win.slices[1]], return_dict=False)
    finally:
        for handle in handles:
            handle.remove()
    stats: GroupStats = {}
    for module, (entry,) in sums.items():
        mean = entry[0] / entry[2]
        stats[module] = (mean, (entry[1] / entry[2] - mean * mean).clamp_min(0.0))
    return stats


@contextmanager
def frozen_group_norms(decoder: Any, stats: GroupStats) -> Iterator[None]:
    """Make each recorded GroupNorm normalise with the given statistics instead of its input's."""
    patched = [module for module in decoder.modules() if module in stats]
    for module in patched:
        mean, var = stats[module]
        module.forward = _fixed_norm(module, mean, var)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _fixed_norm(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Any:
    scale = (var + module.eps).rsqrt()

    def forward(x: torch.Tensor) -> torch.Tensor:
        grouped = x.float().reshape(x.shape[0], module.num_groups, -1)
        normed = ((grouped - mean[None, :, None]) * scale[None, :, None]).reshape(x.shape)
        if module.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            normed = normed * module.weight.float().reshape(shape) + module.bias.float().reshape(shape)
        return normed.to(x.dtype)

    return forward
