"""VAE encoding and decoding in tiles whose GroupNorm layers all use one set of statistics.

Coding tiles independently normalises each by its own statistics, so flat and busy tiles come out in
different tones. Here the statistics of every GroupNorm are first pooled over a sample of tiles (up to
16, evenly spread) run normally, each with its context but counting only its own window's share of
every feature map (sums and sums of squares, so the pool is the statistics of their union). Then every
tile runs again with those statistics frozen: one tone for the whole image for at most one extra pass.
Tiles carry `pad` latent cells of context that are computed and cut away, so convolutions see real
neighbours. Decoded tiles go straight into a CPU array, and an image to encode may be a `HostPixels`
(pixels.py) whose windows reach the device one at a time: device memory stays that of one tile.

Either a diffusers `AutoencoderKL` or a bare encoder/decoder module can be passed: with a VAE, its
`encode`/`decode` run (quant convs included, and any offload hooks diffusers or accelerate put on
it); a bare module (a fine-tuned encoder, a decoder with extra inputs) is called on the tile directly
and must return the latent moments (encoder) or the image (decoder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion.pixels import HostPixels, as_tensor
from studio.ops.tiling import Window, tile_grid

if TYPE_CHECKING:
    import torch

GroupStats = dict[Any, tuple["torch.Tensor", "torch.Tensor"]]
STATS_TILES = 16


def to_image(decoded: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) decoder output in [-1, 1] -> (H, W, 3) float32 in [0, 1], as diffusers post-processes."""
    return (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()


def decode(vae_or_decoder: Any, latents: torch.Tensor, tile: int = 0, pad: int = 16) -> np.ndarray:
    """Unscaled latents (1, C, h, w) -> an (h*f, w*f, 3) image in [0, 1]; tile in latent cells, 0: one pass."""
    import torch

    decoder, run = _decoder(vae_or_decoder)
    factor = _factor(decoder, "up_blocks", "upsamplers")
    height, width = latents.shape[-2:]
    with torch.no_grad():
        if tile <= 0 or (height <= tile and width <= tile):
            return to_image(run(latents))
        return _tiled_image(run, [(run, decoder)], latents, factor, tile, pad)


def decode_fused(
    vae: Any,
    latents: torch.Tensor,
    pixels: HostPixels,
    capturing: Callable[[], AbstractContextManager[Any]],
    tile: int = 0,
    pad: int = 16,
) -> np.ndarray:
    """Decode where the decoder fuses features the VAE's encoder computes from `pixels` (StableSR's CFW):
    inside `capturing()` the encoder runs on the pixels, then the decoder on the latents. Tiled, each tile
    pairs a latent window with the same region of the pixels, and GroupNorm statistics are pooled twice:
    the encoder's first, then, with those frozen, the decoder's (the fusion changes what it normalises)."""
    import torch

    factor = _factor(vae.decoder, "up_blocks", "upsamplers")

    def fused(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with capturing():
            vae.encoder(pair[1])
            return vae.decode(pair[0], return_dict=False)[0]

    height, width = latents.shape[-2:]
    source = _Paired(latents, pixels, factor)
    with torch.no_grad():
        if tile <= 0 or (height <= tile and width <= tile):
            return to_image(fused((latents, as_tensor(pixels))))
        stages = [(lambda pair: vae.encoder(pair[1]), vae.encoder), (fused, vae.decoder)]
        return _tiled_image(fused, stages, source, factor, tile, pad)


class _Paired:
    """Latents and the pixels of the same image, cut together: `[..., rows, cols]` in latent cells gives
    (latent window, pixel window)."""

    def __init__(self, latents: torch.Tensor, pixels: HostPixels, factor: int) -> None:
        self.latents, self.pixels, self.factor = latents, pixels, factor
        self.shape = latents.shape

    def __getitem__(self, index: tuple[Any, slice, slice]) -> tuple[torch.Tensor, torch.Tensor]:
        _, rows, cols = index
        f = self.factor
        return self.latents[..., rows, cols], self.pixels[
            ..., slice(rows.start * f, rows.stop * f), slice(cols.start * f, cols.stop * f)
        ]


def _tiled_image(
    run: Callable[[Any], torch.Tensor],
    stages: list[tuple[Callable[[Any], Any], Any]],
    source: Any,
    factor: int,
    tile: int,
    pad: int,
) -> np.ndarray:
    """Decoded tiles of `source` (latent-sized, cut in latent cells) placed into one CPU image."""
    height, width = source.shape[-2:]
    out = np.empty((height * factor, width * factor, 3), dtype=np.float32)

    def place(win: Window, part: torch.Tensor) -> None:
        out[win.scaled(factor).slices] = to_image(part)

    _tiled(run, stages, source, (height, width), tile, pad, in_scale=1, out_scale=factor, place=place)
    return out


def encode(
    vae_or_encoder: Any,
    image: torch.Tensor | HostPixels,
    tile: int = 0,
    pad: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """An image (1, 3, H, W) in [-1, 1] (a tensor, or `HostPixels` read a tile at a time) -> the latent
    distribution's mean (1, C, H/f, W/f), not scaled.

    With a `generator`, a sample from the distribution instead (drawn for the whole latent at once,
    as diffusers draws it, so tiling does not change the noise). `tile` and `pad` are in latent
    cells (times f in pixels); sides must divide by f. The caller multiplies by the scaling factor.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    encoder, run = _encoder(vae_or_encoder)
    factor = _factor(encoder, "down_blocks", "downsamplers")
    if image.shape[-2] % factor or image.shape[-1] % factor:
        raise ValueError(f"encode: image sides {tuple(image.shape[-2:])} must be multiples of {factor}")
    height, width = image.shape[-2] // factor, image.shape[-1] // factor
    with torch.no_grad():
        if tile <= 0 or (height <= tile and width <= tile):
            moments = run(as_tensor(image))
        else:
            parts: list[tuple[Window, torch.Tensor]] = []
            _tiled(
                run,
                [(run, encoder)],
                image,
                (height, width),
                tile,
                pad,
                in_scale=factor,
                out_scale=1,
                place=lambda win, part: parts.append((win, part)),
            )
            moments = torch.empty(
                (1, parts[0][1].shape[1], height, width), dtype=parts[0][1].dtype, device=parts[0][1].device
            )
            for win, part in parts:
                moments[(..., *win.slices)] = part
        mean, logvar = moments.chunk(2, dim=1)
        if generator is None:
            return mean
        noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise


def choose_vae_tile(height: int, width: int, free_bytes: float, bytes_per_cell: float, pad: int = 16) -> int:
    """Latent tile for coding a (height, width) latent: 0 when the whole fits in `free_bytes`, else the
    largest square (a multiple of 8) whose padded context fits. `bytes_per_cell`: the VAE's memory per
    latent cell (activations of the f*f pixels it codes). Bigger tiles waste less on context: a 64
    tile with 16 cells of context computes 2.25x its own area, a 256 one 1.27x."""
    if height * width * bytes_per_cell <= free_bytes:
        return 0
    side = math.isqrt(int(free_bytes / bytes_per_cell)) - 2 * pad
    return max(side // 8 * 8, 8)


def vae_work(height: int, width: int, tile: int, pad: int = 16) -> int:
    """Latent cells a tiled encode or decode computes (the statistics sample and every padded tile)."""
    if tile <= 0 or (height <= tile and width <= tile):
        return height * width
    windows = tile_grid(height, width, tile, 0)
    contexts = [win.padded(pad, height, width) for win in windows]
    sample = _sample(windows, STATS_TILES)
    return sum(c.height * c.width for c in contexts) + sum(contexts[i].height * contexts[i].width for i in sample)


def _decoder(vae_or_decoder: Any) -> tuple[Any, Callable[[torch.Tensor], torch.Tensor]]:
    if hasattr(vae_or_decoder, "decoder"):
        vae = vae_or_decoder
        return vae.decoder, lambda z: vae.decode(z, return_dict=False)[0]
    return vae_or_decoder, vae_or_decoder


def _encoder(vae_or_encoder: Any) -> tuple[Any, Callable[[torch.Tensor], torch.Tensor]]:
    if hasattr(vae_or_encoder, "encoder"):
        vae = vae_or_encoder
        return vae.encoder, lambda x: vae.encode(x, return_dict=False)[0].parameters
    return vae_or_encoder, vae_or_encoder


def _factor(module: Any, blocks: str, samplers: str) -> int:
    """The spatial scale of a diffusers Encoder/Decoder: 2 per block that resamples."""
    return 2 ** sum(getattr(block, samplers, None) is not None for block in getattr(module, blocks))


def _tiled(
    run: Callable[[Any], torch.Tensor],
    stages: list[tuple[Callable[[Any], Any], Any]],
    source: Any,
    latent_size: tuple[int, int],
    tile: int,
    pad: int,
    in_scale: int,
    out_scale: int,
    place: Callable[[Window, torch.Tensor], None],
) -> None:
    """Run `run` over latent-unit windows of `source` (in_scale source units per cell) with `pad` cells of
    context and frozen shared GroupNorm statistics; hand each window's cropped output to `place`.

    `stages` lists (run, network) pairs whose GroupNorm statistics are pooled in order, each stage's frozen
    while the next one's are gathered (one pair for a plain encode or decode)."""
    height, width = latent_size
    windows = tile_grid(height, width, tile, 0)
    contexts = [win.padded(pad, height, width) for win in windows]
    with ExitStack() as frozen:
        for stage_run, network in stages:
            stats = group_norm_stats(stage_run, network, source, windows, contexts, in_scale)
            frozen.enter_context(frozen_group_norms(network, stats))
        for win, ctx in zip(windows, contexts, strict=True):
            out = run(source[(..., *ctx.scaled(in_scale).slices)])
            inner = Window(win.top - ctx.top, win.bottom - ctx.top, win.left - ctx.left, win.right - ctx.left)
            place(win, out[(..., *inner.scaled(out_scale).slices)])


def _sample(windows: list[Window], count: int) -> list[int]:
    """Indices of a grid of up to `count` windows spread evenly over the rows and columns."""
    per_axis = max(1, math.isqrt(count))
    tops, lefts = sorted({w.top for w in windows}), sorted({w.left for w in windows})
    chosen_tops, chosen_lefts = _spread(tops, per_axis), _spread(lefts, per_axis)
    return [i for i, w in enumerate(windows) if w.top in chosen_tops and w.left in chosen_lefts]


def _spread(values: list[int], count: int) -> set[int]:
    """`count` values evenly spread over the sorted list (all of them when there are fewer)."""
    if len(values) <= count:
        return set(values)
    if count == 1:
        return {values[0]}
    return {values[round(i * (len(values) - 1) / (count - 1))] for i in range(count)}


def group_norm_stats(
    run: Callable[[Any], Any],
    network: Any,
    source: Any,
    windows: list[Window],
    contexts: list[Window],
    in_scale: int,
) -> GroupStats:
    """Per-group mean and variance at every GroupNorm of `network`, pooled over a sample of tiles.

    Each sampled tile runs with its context; at every GroupNorm only the share of the feature map that
    belongs to the tile's own window is counted, so with every tile sampled the pool covers the image
    exactly once (what a whole-image pass would see, up to the tiles' own normalisation upstream).
    """
    import torch

    current: dict[str, tuple[float, ...]] = {}
    sums: dict[Any, torch.Tensor] = {}

    def record(module: torch.nn.GroupNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        top, bottom, left, right, aspect = current["share"]
        if x.dim() == 3:  # attention normalises (B, C, h*w): unflatten with the context's aspect ratio
            h = round(math.sqrt(x.shape[-1] * aspect))
            x = x.unflatten(-1, (h, x.shape[-1] // h))
        h, w = x.shape[-2:]
        x = x[..., round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
        grouped = x.float().reshape(x.shape[0], module.num_groups, -1).transpose(0, 1).flatten(1)
        count = torch.full((module.num_groups,), float(grouped.shape[1]), device=grouped.device)
        entry = torch.stack([grouped.sum(1), (grouped * grouped).sum(1), count])
        sums[module] = sums[module] + entry if module in sums else entry

    norms = [m for m in network.modules() if isinstance(m, torch.nn.GroupNorm)]
    handles = [m.register_forward_pre_hook(record) for m in norms]
    try:
        for index in _sample(windows, STATS_TILES):
            win, ctx = windows[index], contexts[index]
            current["share"] = (
                (win.top - ctx.top) / ctx.height,
                (win.bottom - ctx.top) / ctx.height,
                (win.left - ctx.left) / ctx.width,
                (win.right - ctx.left) / ctx.width,
                ctx.height / ctx.width,
            )
            run(source[(..., *ctx.scaled(in_scale).slices)])
    finally:
        for handle in handles:
            handle.remove()
    stats: GroupStats = {}
    for module, (total, squares, count) in sums.items():
        mean = total / count
        stats[module] = (mean, (squares / count - mean * mean).clamp_min(0.0))
    return stats


@contextmanager
def frozen_group_norms(network: Any, stats: GroupStats) -> Iterator[None]:
    """Make each recorded GroupNorm normalise with the given statistics instead of its input's.

    The patch goes where the module's own computation lives: `forward`, or, when accelerate has hooked
    the module (offloading), the `_old_forward` its hook calls after moving the weights in. Whatever was
    there before is put back afterwards, hooks included.
    """
    patched: list[tuple[Any, str, Any]] = []
    for module in network.modules():
        if module not in stats:
            continue
        attribute = "_old_forward" if hasattr(module, "_hf_hook") and hasattr(module, "_old_forward") else "forward"
        patched.append((module, attribute, vars(module).get(attribute)))
        setattr(module, attribute, _fixed_norm(module, *stats[module]))
    try:
        yield
    finally:
        for module, attribute, previous in patched:
            if previous is None:
                delattr(module, attribute)
            else:
                setattr(module, attribute, previous)


def _fixed_norm(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        scale = (var.to(x.device) + module.eps).rsqrt()
        grouped = x.float().reshape(x.shape[0], module.num_groups, -1)
        normed = ((grouped - mean.to(x.device)[None, :, None]) * scale[None, :, None]).reshape(x.shape)
        if module.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            normed = normed * module.weight.float().reshape(shape) + module.bias.float().reshape(shape)
        return normed.to(x.dtype)

    return forward
