"""The `sd-x4` engine: Stable Diffusion x4 upscaler with a prompt, tiled so memory stays flat.

Strength mapping (used only when --noise-level was not given; an explicit --noise-level wins):
settings.strength sets the x4 model's noise_level, i.e. how much of the low-res input the model is
told to distrust and re-invent, by linear interpolation between these points:

    strength  0.0   0.5   0.75   1.0
    noise       0    20     50   350

0.5 (the default) gives the model's usual 20; 0.5-0.75 spans the 20-50 range that suits most photos;
above 0.75 the model increasingly ignores the input's fine structure (up to the maximum, 350).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.devices import compute_dtype, free_memory_bytes, resolve_device
from studio.diffusion import loading
from studio.diffusion.latent_tiling import LATENT_OVERLAP, choose_latent_tiles, unet_work
from studio.diffusion.memory import run_shrinking_tiles, tile_ladder
from studio.diffusion.offload import Placement
from studio.diffusion.samplers.schedulers import check_scheduler_name, scheduler_label
from studio.diffusion.tiled_vae import choose_vae_tile
from studio.engines.base import NO_CONTEXT, Availability, Engine, EngineResult, ProgressFn, RestoreContext, output_size
from studio.engines.sd_x4.pipeline import UpscaleComponents, UpscalePipeline, UpscaleRequest
from studio.errors import InputError
from studio.messages import notice
from studio.ops.resize import pad_to_multiple, resize
from studio.settings import Settings, layer_rank

DEFAULT_MODEL = "stabilityai/stable-diffusion-x4-upscaler"
WEIGHTS_NAME = "sd-x4"
NATIVE_SCALE = 4
STRENGTH_TO_NOISE = ((0.0, 0.0), (0.5, 20.0), (0.75, 50.0), (1.0, 350.0))
MIN_SIDE = 8

# Rough cost model of the real SD x4 architecture for --dry-run and automatic tiling: bytes per
# latent pixel of one guided UNet call (batch 2) and per output pixel of the VAE decoder, per byte of
# dtype, and parameter counts. Untiled peak memory from benchmarks/bench_sd_x4.py on CPU (fp32) grew by
# ~59 KB per input pixel between 64 and 96 px inputs (292 -> 593 MB, UNet and VAE together).
UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE = 6_000
VAE_BYTES_PER_OUT_PIXEL_PER_DTYPE_BYTE = 1_000
PARAMS = {"unet": 473_398_020, "vae": 55_325_927, "text_encoder": 340_000_000}
# Seconds per latent pixel per guided UNet call: CPU measured by the benchmark (2 shared cores, 64 px
# input: 10-15 s a step); CUDA derived from the guide's 3.5 s for 512 -> 2048 at 25 steps (RTX 4090);
# MPS unmeasured, assumed ten times slower than that GPU.
_CUDA_SECONDS = 3.5 / (25 * 512 * 512)
SECONDS_PER_PIXEL_STEP = {"cpu": 2.5e-3, "cuda": _CUDA_SECONDS, "mps": 10 * _CUDA_SECONDS}


def noise_level_for_strength(strength: float) -> int:
    """Piecewise-linear strength -> noise_level (see the module docstring for the table)."""
    points = STRENGTH_TO_NOISE
    for (s0, n0), (s1, n1) in itertools.pairwise(points):
        if strength <= s1:
            return round(n0 + (n1 - n0) * (max(strength, s0) - s0) / (s1 - s0))
    return round(points[-1][1])


@dataclass(frozen=True)
class Loaded:
    """The pipeline, once loaded, and what loading chose (for provenance)."""

    pipeline: UpscalePipeline
    attention: str
    revision: str | None


class SDx4Engine(Engine):
    """Runs `UpscalePipeline` on the SD x4 upscaler's components; other scales resize its 4x output."""

    name = "sd-x4"
    summary = "Stable Diffusion x4 upscaler: prompt-guided 4x detail (diffusers), tiled for large images"
    default_color_fix = "wavelet"
    diffusion = True
    default_model = WEIGHTS_NAME
    auto_rank = 0
    auto_needs_gpu = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        check_scheduler_name(settings.scheduler)
        self.source = loading.resolve_source(settings.model or DEFAULT_MODEL)
        self._pipeline: Loaded | None = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """diffusers importable and the weights on disk (folder, file or HF cache); no loading."""
        return loading.availability(
            lambda: loading.resolve_source(settings.model or DEFAULT_MODEL),
            WEIGHTS_NAME,
            settings.device,
            "no GPU in use: runs on CPU, several minutes per small image",
        )

    def noise_level(self) -> tuple[int, str]:
        """The noise level to use and why: --noise-level if given, else from --strength.

        When both are set, the one from the higher settings layer wins (a --strength flag beats a
        preset's noise_level); on the same layer, noise_level wins.
        """
        noise_rank = layer_rank(self.settings.source_of("noise_level"))
        if noise_rank > 0 and noise_rank >= layer_rank(self.settings.source_of("strength")):
            return self.settings.noise_level, "noise_level"
        return noise_level_for_strength(self.settings.strength), f"strength {self.settings.strength}"

    def tiles(self, height: int, width: int, dtype_bytes: int, free_bytes: int) -> tuple[int, int, int]:
        """(UNet tile, overlap, VAE tile) in latent pixels; 0 = untiled. --tile N sets both tiles (VAE at most
        128); otherwise the shared policy picks the largest tiles that fit in 60% of free memory, dividing the
        latent evenly. --tile-overlap given on any layer beats the policy's overlap."""
        tile = self.settings.tile
        user_overlap = layer_rank(self.settings.source_of("tile_overlap")) > 0 or tile is not None
        overlap = self.settings.tile_overlap if user_overlap else LATENT_OVERLAP  # also for out-of-memory retries
        if tile == 0:
            return 0, overlap, 0
        if tile is not None:
            return tile, min(overlap, tile // 2), min(tile, 128)
        budget = free_bytes * 0.6
        unet_tile, _ = choose_latent_tiles(height, width, budget, UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE * dtype_bytes)
        vae_cell = VAE_BYTES_PER_OUT_PIXEL_PER_DTYPE_BYTE * 4 * NATIVE_SCALE**2  # fp32 VAE, 16 pixels a latent cell
        vae_tile = choose_vae_tile(height, width, budget, vae_cell)
        return unet_tile, min(overlap, unet_tile // 4) if unet_tile else overlap, vae_tile

    def _load(self) -> Loaded:
        if self._pipeline is None:
            from diffusers import StableDiffusionUpscalePipeline

            device = resolve_device(self.settings.device)
            dtype = compute_dtype(device)
            pipe = loading.load_pipeline(StableDiffusionUpscalePipeline, self.source, WEIGHTS_NAME, dtype)
            components = UpscaleComponents.from_pipeline(pipe)
            attention = loading.enable_fast_attention(components.unet, device)
            pipeline = UpscalePipeline(components, Placement(self.settings.offload, device), dtype)
            self._pipeline = Loaded(pipeline, attention, loading.snapshot_revision(self.source))
        return self._pipeline

    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        """4x with the diffusion model (on a copy padded to the UNet's size multiple), then crop and resize."""
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise InputError(f"image {width}x{height}: the sd-x4 engine needs at least {MIN_SIDE} px a side")
        loaded = self._load()
        pipeline = loaded.pipeline
        multiple = pipeline.components.size_multiple
        padded = pad_to_multiple(image, multiple)
        noise_level, noise_from = self.noise_level()
        dtype_bytes = pipeline.dtype.itemsize
        unet_tile, overlap, vae_tile = self.tiles(*padded.shape[:2], dtype_bytes, free_memory_bytes(pipeline.device))

        def attempt(tiles: tuple[int, int]) -> tuple[UpscaleRequest, np.ndarray]:
            unet_tile, vae_tile = tiles
            request = UpscaleRequest(
                prompt=self.settings.prompt,
                negative_prompt=self.settings.negative_prompt,
                steps=self.settings.steps,
                guidance=self.settings.guidance,
                noise_level=noise_level,
                seed=self.settings.seed,
                scheduler=self.settings.scheduler,
                unet_tile=unet_tile,
                tile_overlap=min(overlap, max(unet_tile // 2, 0)),
                vae_tile=vae_tile,
            )
            return request, pipeline(padded, request, progress)

        attempts = tile_ladder(unet_tile, vae_tile, *padded.shape[:2])
        (request, result), retries = run_shrinking_tiles(attempt, attempts, pipeline.device, self.name)
        result = result[: height * NATIVE_SCALE, : width * NATIVE_SCALE]
        out_h, out_w = output_size(height, width, scale)
        if (out_h, out_w) != result.shape[:2]:
            if scale > NATIVE_SCALE:
                notice(f"sd-x4 is a 4x model; the last {scale / NATIVE_SCALE:.2f}x is a Lanczos resize")
            result = resize(result, out_h, out_w)
        return EngineResult(result, self.provenance(loaded, request, noise_from, retries))

    def provenance(
        self, loaded: Loaded, request: UpscaleRequest, noise_from: str, retries: list[str]
    ) -> dict[str, Any]:
        """Everything needed to reproduce one restore, and where the noise level came from."""
        pipeline = loaded.pipeline
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.source.ref,
            "model_kind": self.source.kind,
            "revision": loaded.revision,
            "scheduler": scheduler_label(request.scheduler, pipeline.components.scheduler),
            "steps": request.steps,
            "guidance": request.guidance,
            "noise_level": request.noise_level,
            "resolved_from": {"noise_level": noise_from},
            "seed": request.seed,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "tile": request.unet_tile,
            "tile_overlap": request.tile_overlap,
            "vae_tile": request.vae_tile,
            "dtype": str(pipeline.components.unet.dtype).replace("torch.", ""),
            "device": str(pipeline.device),
            "offload": pipeline.placement.mode,
            "attention": loaded.attention,
        }
        if retries:
            info["memory_retries"] = retries
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """Estimated tiles, memory and time for --dry-run, from the cost model above; loads nothing."""
        device = resolve_device(self.settings.device)
        dtype_bytes = 4 if device.type == "cpu" else 2
        padded = (height + -height % 8, width + -width % 8)
        unet_tile, overlap, vae_tile = self.tiles(*padded, dtype_bytes, free_memory_bytes(device))
        unet_px = min(unet_tile, padded[0]) * min(unet_tile, padded[1]) if unet_tile else padded[0] * padded[1]
        vae_px = (
            min(vae_tile + 32, padded[0]) * min(vae_tile + 32, padded[1]) if vae_tile else padded[0] * padded[1]
        ) * NATIVE_SCALE**2
        covered = _covered_pixels(padded, unet_tile, min(overlap, unet_tile // 2))
        resident = {
            "none": sum(PARAMS.values()),
            "encoders": PARAMS["unet"] + PARAMS["vae"],  # the text encoder visits the device only to encode
        }.get(self.settings.offload, PARAMS["unet"])
        weights = resident * dtype_bytes
        peak = weights + max(
            unet_px * UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE * dtype_bytes,
            vae_px * VAE_BYTES_PER_OUT_PIXEL_PER_DTYPE_BYTE * 4,
        )
        calls = 2 if self.settings.guidance > 1 else 1
        seconds = covered * self.settings.steps * SECONDS_PER_PIXEL_STEP.get(device.type, 1e-4) * calls / 2
        plan = super().plan(height, width, scale)
        plan.update(
            model=self.source.describe(),
            device=str(device),
            steps=self.settings.steps,
            noise_level=self.noise_level()[0],
            tile=unet_tile,
            vae_tile=vae_tile,
            estimated_peak_memory_gb=round(peak / 1024**3, 1),
            estimated_seconds=round(seconds, 1),
        )
        return plan


def _covered_pixels(size: tuple[int, int], tile: int, overlap: int) -> int:
    """Latent pixels the UNet processes per step, counting tile overlaps twice."""
    return unet_work(size[0], size[1], tile, overlap)
