"""SUPIR's knobs and sizes: the strength mapping (see engine.py's docstring), the working size, and the
UNet/VAE tiles chosen from free memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

from studio.diffusion.latent_tiling import LATENT_OVERLAP
from studio.settings import Settings, layer_rank

SIZE_MULTIPLE = 64
MIN_INPUT_SIDE = 8
NATIVE_TILE = 128  # latent pixels (1024 px): SDXL's training size and SUPIR's tile, the largest automatic one
MIN_AUTO_TILE = 64  # latent pixels: the smallest tile the memory estimate may choose
AUTO_VAE_TILE = 64  # latent pixels: SUPIR's decoder tile
# Device bytes per latent pixel of one guided (batch 2) SDXL UNet + ControlNet call, per byte of dtype, and
# parameters of UNet + ControlNet + text encoders + VAE: used to choose tiles from free memory. The UNet
# figure is twice the 7,880 benchmarks/bench_supir.py measures (torch's tensors on the CPU, SDPA attention;
# the margin is for CUDA kernels' workspaces and the allocator's slack, not yet checked on a GPU).
UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE = 16_000
VAE_BYTES_PER_PIXEL = 4_000  # the SDXL VAE decoder per output pixel: measured 3,840 in fp32, 2,560 in bf16
TEXT_ENCODER_PARAMS = 817_000_000  # CLIP ViT-L + OpenCLIP bigG: on the device only while encoding (--offload encoders)
UNET_PARAMS, CONTROLNET_PARAMS, VAE_PARAMS = 2_567_000_000, 1_251_000_000, 84_000_000
PARAMS = UNET_PARAMS + CONTROLNET_PARAMS + TEXT_ENCODER_PARAMS + VAE_PARAMS


def resident_weight_bytes(dtype_bytes: int, vae_bytes: int, adapter: tuple[int, int], text_resident: bool) -> int:
    """Bytes the weights hold where they run: the UNet and the adapter (`adapter`: its parameters in the
    diffusion dtype and, for SUPIR's denoise encoder, in the VAE's dtype) plus the VAE, and the text encoders
    unless they wait elsewhere (--offload encoders on a GPU; on a CPU everything is in the same RAM)."""
    main, vae_side = adapter
    text = TEXT_ENCODER_PARAMS * dtype_bytes if text_resident else 0
    return (UNET_PARAMS + main) * dtype_bytes + (VAE_PARAMS + vae_side) * vae_bytes + text


@dataclass(frozen=True)
class Resolved:
    """The sampler settings of one run and, for each, where it came from ('strength 0.4' or the flag)."""

    tau: float
    guidance: float
    cfg_start: float
    control_scale: float
    control_scale_start: float | None
    sources: dict[str, str]


def from_strength(strength: float) -> dict[str, float]:
    """The mapping table in the module docstring: tau, final CFG, CFG start, control scale."""
    tau_points = ((0.0, 0.0), (0.25, 1.0), (0.5, 2.0), (0.75, 4.0))
    if strength >= 1.0:
        tau = -1.0
    else:
        tau = next(
            t0 + (t1 - t0) * (strength - s0) / (s1 - s0)
            for (s0, t0), (s1, t1) in zip(tau_points, [*tau_points[1:], (1.0, 8.0)])
            if strength <= s1
        )
    return {
        "restore_tau": tau,
        "guidance": 4.0 + 3.5 * strength,
        "cfg_start": 1.0 + 3.0 * strength,
        "adapter_scale": 1.0 - 0.1 * strength,
    }


def working_size(out_h: int, out_w: int, min_side: int, model_multiple: int = 8) -> tuple[int, int]:
    """The diffusion size: the output enlarged until its short side is >= min_side, sides rounded up to
    multiples of 64 (SUPIR's rule); with min_side 0 only to what the model needs (`model_multiple`)."""
    factor = max(1.0, min_side / min(out_h, out_w)) if min_side else 1.0
    multiple = max(SIZE_MULTIPLE, model_multiple) if min_side else model_multiple
    return (math.ceil(out_h * factor / multiple) * multiple, math.ceil(out_w * factor / multiple) * multiple)


def resolve_knobs(settings: Settings) -> Resolved:
    """Each sampler setting from its flag when that flag's layer is at least --strength's, else mapped."""
    mapped = from_strength(settings.strength)
    strength_rank = layer_rank(settings.source_of("strength"))
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name, value in mapped.items():
        raw = getattr(settings, name)
        rank = layer_rank(settings.source_of(name))
        if raw is not None and rank > 0 and rank >= strength_rank:
            values[name], sources[name] = float(raw), settings.source_of(name)
        else:
            values[name], sources[name] = value, f"strength {settings.strength}"
    start = settings.adapter_scale_start
    return Resolved(
        values["restore_tau"], values["guidance"], values["cfg_start"], values["adapter_scale"], start, sources
    )


def choose_tiles(
    settings: Settings, latent_h: int, latent_w: int, factor: int, dtype_bytes: int, free_bytes: int
) -> tuple[int, int, int]:
    """(UNet tile, overlap, VAE tile) in latent pixels; 0 = untiled.

    --tile and --tile-overlap are in pixels of the working image. Automatic: windows of SDXL's native
    size (NATIVE_TILE, SUPIR's own tile; beyond it SDXL repeats structures), smaller only when the
    memory estimate needs it (not below MIN_AUTO_TILE; out of memory shrinks further). The shared grid
    then takes the fewest windows of at most that size with LATENT_OVERLAP shared cells and shrinks
    them to exactly the cells needed: at most about 1.3x the no-overlap minimum of UNet work
    (benchmarks/bench_supir.py)."""
    tile = settings.tile
    if tile == 0:
        return 0, 0, 0
    longest = max(latent_h, latent_w)
    budget = free_bytes * 0.6
    if tile is None:
        per_pixel = UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE * dtype_bytes
        largest = min(NATIVE_TILE, max(MIN_AUTO_TILE, math.isqrt(int(budget // per_pixel)) // 8 * 8))
        user_overlap = layer_rank(settings.source_of("tile_overlap")) > 0
        overlap = min(settings.tile_overlap // factor if user_overlap else LATENT_OVERLAP, largest // 2)
        unet_tile = 0 if largest >= longest else largest
        vae_whole = latent_h * latent_w * factor**2 * VAE_BYTES_PER_PIXEL < budget
        return unet_tile, (overlap if unet_tile else 0), (0 if vae_whole else AUTO_VAE_TILE)
    unet_tile = max(tile // factor, 1)
    overlap = min(settings.tile_overlap // factor, unet_tile // 2)
    return (0, 0, 0) if unet_tile >= longest else (unet_tile, overlap, min(unet_tile, AUTO_VAE_TILE))
