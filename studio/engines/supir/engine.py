"""The `supir` engine: an SDXL prior steered by the input, sampled with SUPIR's restoration guidance.

Two adaptors, one sampler (supir_recipe.py):
- permissive (default): an SDXL tile ControlNet (`xinsir/controlnet-tile-sdxl-1.0`, Apache-2.0; a hub id,
  folder or one file) reads the stage-1 image x1 (the fast engine's upscale, or Lanczos);
- official: SUPIR-v0Q / v0F (non-commercial) given as `--adapter FILE`: the denoise encoder makes x1,
  the adaptor and ZeroSFT connectors steer SDXL (adapters/supir.py).
A file's kind (SUPIR checkpoint or ControlNet) is told by its key names (adapters/identify.py).

Sizes: the output size is scale x input; diffusion runs at that size enlarged so the short side is at
least --min-side (default 1024, SDXL's native size; 0 = at the output size), sides rounded up to
multiples of 64, and the result is resized back to exactly the output size.

Strength mapping (each value only when its own flag was not given; a raw flag beats --strength):

    strength          0      0.25   0.5    0.75   1
    --restore-tau     0      1      2      4      off    pull toward x1's latent: (sigma/sigma_max)^tau
    --guidance        4.0    4.875  5.75   6.625  7.5    final CFG (SUPIR fidelity 4.0 -> quality 7.5)
    --cfg-start       1.0    1.75   2.5    3.25   4.0    CFG at the highest noise (linear in sigma)
    --adapter-scale   1.0    0.975  0.95   0.925  0.9    control scale (SUPIR quality used 0.93)

0 stays with the input (tau 0 holds the estimate at x1's latent until the last steps), 1 is SUPIR's
quality setting (no restoration guidance, CFG 4 -> 7.5). Provenance records every resolved value and
where it came from.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion import loading
from studio.engines.base import (
    ADAPTER_SETTINGS,
    SAMPLING_SETTINGS,
    SUPIR_SETTINGS,
    Availability,
    Engine,
    EngineResult,
    ProgressFn,
    output_size,
)
from studio.errors import InputError, UsageError
from studio.ops.resize import resize
from studio.settings import Settings, layer_rank

if TYPE_CHECKING:
    from studio.diffusion.identify import AdapterSource

BASE_WEIGHTS = "sdxl-base"  # stabilityai/stable-diffusion-xl-base-1.0 (configs/weights.toml)
ADAPTER_WEIGHTS = "controlnet-tile-sdxl"  # xinsir/controlnet-tile-sdxl-1.0, Apache-2.0
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
PARAMS = 2_567_000_000 + 1_251_000_000 + TEXT_ENCODER_PARAMS + 84_000_000


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


class SupirEngine(Engine):
    """SUPIR-style restoration on SDXL; see the module docstring for sizes and the strength mapping."""

    name = "supir"
    summary = "SDXL restoration with SUPIR's restoration-guided sampling (tile ControlNet or SUPIR weights)"
    default_color_fix = "wavelet"
    default_model = "supir-tile"  # sdxl-base + controlnet-tile-sdxl, both commercially usable
    diffusion = True  # never picked by `auto`: SDXL is the heaviest engine, chosen on purpose

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        return SAMPLING_SETTINGS | ADAPTER_SETTINGS | SUPIR_SETTINGS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        from studio.engines.supir.recipe import SCHEDULERS

        if settings.scheduler not in (None, *SCHEDULERS):
            raise UsageError(
                f"--scheduler {settings.scheduler!r}: the supir engine samples with {' or '.join(SCHEDULERS)}"
            )
        self.source, self.adapter = resolve_sources(settings)
        self.official = self.adapter.kind == "supir"
        self._recipe: Any = None
        self._last: dict[str, Any] = {}
        self._color_reference: np.ndarray | None = None
        self._captioner: Any = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """diffusers importable, the SDXL base on disk and the adapter a usable kind (a file: by its key
        names); no loading."""
        return loading.availability(
            lambda: resolve_sources(settings)[0],
            BASE_WEIGHTS,
            settings.device,
            "no GPU in use: SDXL on a CPU takes many minutes per image",
        )

    # ------------------------------------------------------------------------------ settings
    def resolved(self) -> Resolved:
        """Each sampler setting from its flag when that flag's layer is at least --strength's, else mapped."""
        settings = self.settings
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

    def dtypes(self, device: Any) -> tuple[Any, Any]:
        """(diffusion dtype, VAE dtype): --dtype or fp16 on CUDA / fp32 elsewhere; the VAE never in fp16."""
        import torch

        names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        name = self.settings.dtype or ("fp16" if device.type == "cuda" else "fp32")
        dtype = names[name]
        if dtype == torch.float32:
            return dtype, torch.float32
        bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
        return dtype, torch.bfloat16 if bf16_ok else torch.float32

    def tiles(
        self, latent_h: int, latent_w: int, factor: int, dtype_bytes: int, free_bytes: int
    ) -> tuple[int, int, int]:
        """(UNet tile, overlap, VAE tile) in latent pixels; 0 = untiled.

        --tile and --tile-overlap are in pixels of the working image. Automatic: windows of SDXL's native
        size (NATIVE_TILE, SUPIR's own tile; beyond it SDXL repeats structures), smaller only when the
        memory estimate needs it (not below MIN_AUTO_TILE; out of memory shrinks further). The shared grid
        then takes the fewest windows of at most that size with LATENT_OVERLAP shared cells and shrinks
        them to exactly the cells needed: at most about 1.3x the no-overlap minimum of UNet work
        (benchmarks/bench_supir.py)."""
        from studio.diffusion.latent_tiling import LATENT_OVERLAP

        tile = self.settings.tile
        if tile == 0:
            return 0, 0, 0
        longest = max(latent_h, latent_w)
        budget = free_bytes * 0.6
        if tile is None:
            per_pixel = UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE * dtype_bytes
            largest = min(NATIVE_TILE, max(MIN_AUTO_TILE, math.isqrt(int(budget // per_pixel)) // 8 * 8))
            user_overlap = layer_rank(self.settings.source_of("tile_overlap")) > 0
            overlap = min(self.settings.tile_overlap // factor if user_overlap else LATENT_OVERLAP, largest // 2)
            unet_tile = 0 if largest >= longest else largest
            vae_whole = latent_h * latent_w * factor**2 * VAE_BYTES_PER_PIXEL < budget
            return unet_tile, (overlap if unet_tile else 0), (0 if vae_whole else AUTO_VAE_TILE)
        unet_tile = max(tile // factor, 1)
        overlap = min(self.settings.tile_overlap // factor, unet_tile // 2)
        return (0, 0, 0) if unet_tile >= longest else (unet_tile, overlap, min(unet_tile, AUTO_VAE_TILE))

    # ------------------------------------------------------------------------------ loading
    def _load(self) -> Any:
        if self._recipe is None:
            from diffusers import StableDiffusionXLPipeline

            from studio.devices import resolve_device
            from studio.diffusion.controlnet_files import load_controlnet
            from studio.diffusion.offload import Placement
            from studio.engines.supir.recipe import SDXLComponents, SupirRecipe

            device = resolve_device(self.settings.device)
            dtype, vae_dtype = self.dtypes(device)
            pipe = loading.load_pipeline(StableDiffusionXLPipeline, self.source, BASE_WEIGHTS, dtype)
            if self.official:
                components = SDXLComponents.from_pipeline(
                    pipe, adaptor=load_supir(self.adapter.ref, pipe, dtype, vae_dtype)
                )
            else:
                controlnet = load_controlnet(self.adapter.ref, pipe.unet, ADAPTER_WEIGHTS, dtype)
                components = SDXLComponents.from_pipeline(pipe, controlnets=[controlnet])
            attention = loading.enable_fast_attention(components.unet, device)
            self._recipe = SupirRecipe(components, Placement(self.settings.offload, device), dtype, vae_dtype)
            self._last.update(
                attention=attention,
                revision=loading.snapshot_revision(self.source),
                device=str(device),
                dtype=_name(dtype),
                vae_dtype=_name(vae_dtype),
            )
        return self._recipe

    # ------------------------------------------------------------------------------ restore
    def stage1(self, image: np.ndarray, scale: float, out_h: int, out_w: int) -> tuple[np.ndarray, str]:
        """The input brought to the output size: the fast engine (default when the runner provides it),
        Lanczos, or as is (`none`, only when it already has the output size)."""
        fast_default = self.stage1_upscaler is not None and not self.official  # official: the denoise encoder
        mode = self.settings.stage1 or ("fast" if fast_default else "lanczos")
        if mode == "none":
            if image.shape[:2] != (out_h, out_w):
                raise UsageError(
                    f"--stage1 none: the input must already have the output size {out_w}x{out_h} "
                    "(use --scale 1, or --stage1 fast|lanczos)"
                )
            return image, mode
        if mode == "fast":
            if self.stage1_upscaler is None:
                raise UsageError("--stage1 fast: no fast engine available here; use --stage1 lanczos")
            return resize(self.stage1_upscaler(image, scale), out_h, out_w), mode
        return resize(image, out_h, out_w), mode

    def restore(self, image: np.ndarray, scale: float, progress: ProgressFn | None = None) -> EngineResult:
        """Stage 1 to the output size, diffusion at the working size, Lanczos back to the output size."""
        from studio.devices import free_memory_bytes
        from studio.diffusion.memory import run_shrinking_tiles, tile_ladder
        from studio.engines.supir.recipe import SupirRequest

        height, width = image.shape[:2]
        if min(height, width) < MIN_INPUT_SIDE:
            raise InputError(f"image {width}x{height}: the supir engine needs at least {MIN_INPUT_SIDE} px a side")
        out_h, out_w = output_size(height, width, scale)
        x1, stage1_mode = self.stage1(image, scale, out_h, out_w)
        recipe = self._load()
        work_h, work_w = working_size(out_h, out_w, self.settings.min_side, recipe.size_multiple)
        factor = recipe.components.vae_scale_factor
        resolved = self.resolved()
        seed = self.settings.seed if self.settings.seed is not None else random.SystemRandom().randrange(2**32)
        unet_tile, overlap, vae_tile = self.tiles(
            work_h // factor, work_w // factor, factor, recipe.dtype.itemsize, free_memory_bytes(recipe.device)
        )
        top = recipe.sigma_max
        control: Any = resolved.control_scale
        if resolved.control_scale_start is not None:
            control = _schedule(recipe, resolved.control_scale_start, resolved.control_scale, top)
        guidance = _schedule(recipe, resolved.cfg_start, resolved.guidance, top)
        conditioning_image = x1 if x1.shape[:2] == (work_h, work_w) else resize(x1, work_h, work_w)
        prompt, caption = self.prompt_for(image, recipe.device)

        def attempt(unet_tile: int, vae_tile: int) -> tuple[SupirRequest, np.ndarray]:
            request = SupirRequest(
                prompt=prompt,
                negative_prompt=self.settings.negative_prompt,
                steps=self.settings.steps,
                guidance=guidance,
                seed=seed,
                control_scales=(control,),
                scheduler=self.settings.scheduler or "edm-euler",
                unet_tile=unet_tile,
                tile_overlap=min(overlap, unet_tile // 2),
                vae_tile=vae_tile,
                tau=resolved.tau,
                churn=self.settings.churn,
                s_noise=self.settings.s_noise,
            )
            return request, recipe(conditioning_image, request, progress)

        attempts = tile_ladder(unet_tile, vae_tile, work_h // factor, work_w // factor)
        (request, result), retries = run_shrinking_tiles(attempt, attempts, recipe.device, self.name)
        self._color_reference = x1 if recipe.stage1_image is None else resize(recipe.stage1_image, out_h, out_w)
        self._last.update(
            request=request,
            resolved=resolved,
            stage1=stage1_mode,
            work_size=[work_w, work_h],
            memory_retries=retries,
            caption=caption,
        )
        if result.shape[:2] != (out_h, out_w):
            result = resize(result, out_h, out_w)
        return EngineResult(result, self.provenance())

    def prompt_for(self, image: np.ndarray, device: Any) -> tuple[str, str | None]:
        """(prompt, caption): with --caption the captioner fills {caption} (or leads the prompt)."""
        from studio.diffusion.offload import Placement
        from studio.engines.supir.caption import Captioner, fill_caption

        if not self.settings.caption:
            return fill_caption(self.settings.prompt, ""), None
        if self._captioner is None:
            between = "none" if self.settings.offload == "none" else "model"  # the captioner waits in RAM
            self._captioner = Captioner(self.settings.caption_model, Placement(between, device))
        caption = self._captioner.caption(image)
        return fill_caption(self.settings.prompt, caption), caption

    def color_reference(self) -> np.ndarray | None:
        """SUPIR fixes colour against the stage-1 image x1 (at the output size), not a bicubic upscale."""
        return self._color_reference

    def provenance(self) -> dict[str, Any]:
        """Everything needed to reproduce the last restore, with where each sampler value came from."""
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.source.ref,
            "model_kind": self.source.kind,
            "adapter": self.adapter.ref,
            "adapter_source": self.adapter.record(),
            "revision": self._last.get("revision", self.source.revision),
        }
        request = self._last.get("request")
        if request is None:
            return info
        resolved: Resolved = self._last["resolved"]
        factor = self._recipe.components.vae_scale_factor
        info.update(
            scheduler=request.scheduler,
            steps=request.steps,
            seed=request.seed,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            restore_tau=resolved.tau,
            guidance=resolved.guidance,
            cfg_start=resolved.cfg_start,
            adapter_scale=resolved.control_scale,
            adapter_scale_start=resolved.control_scale_start,
            resolved_from=resolved.sources,
            churn=request.churn,
            s_noise=request.s_noise,
            stage1=self._last["stage1"],
            work_size=self._last["work_size"],
            tile=request.unet_tile * factor,  # pixels of the working image, as --tile
            tile_overlap=request.tile_overlap * factor,
            latent_tile=request.unet_tile,
            vae_tile=request.vae_tile,
            dtype=self._last["dtype"],
            vae_dtype=self._last["vae_dtype"],
            device=self._last["device"],
            offload=self._recipe.placement.mode,  # what ran: every mode is "none" on a CPU
            attention=self._last["attention"],
        )
        if self._last["memory_retries"]:
            info["memory_retries"] = self._last["memory_retries"]
        if self._last["caption"] is not None:
            info.update(caption=self._last["caption"], caption_model=self._captioner.model_ref)
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """Working size, tiles and the resolved sampler settings for --dry-run; loads nothing."""
        from studio.devices import free_memory_bytes, resolve_device

        device = resolve_device(self.settings.device)
        dtype_bytes = 4 if device.type == "cpu" and self.settings.dtype in (None, "fp32") else 2
        out_h, out_w = output_size(height, width, scale)
        work_h, work_w = working_size(out_h, out_w, self.settings.min_side, 32)
        unet_tile, _, vae_tile = self.tiles(work_h // 8, work_w // 8, 8, dtype_bytes, free_memory_bytes(device))
        resolved = self.resolved()
        resident = PARAMS - TEXT_ENCODER_PARAMS if self.settings.offload == "encoders" else PARAMS
        plan = super().plan(height, width, scale)
        plan.update(
            model=self.source.describe(),
            adapter=self.adapter.ref,
            adapter_kind=f"{self.adapter.kind} ({self.adapter.layout})",
            device=str(device),
            work_size=[work_w, work_h],
            steps=self.settings.steps,
            tile=unet_tile * 8,
            latent_tile=unet_tile,
            vae_tile=vae_tile,
            restore_tau=resolved.tau,
            guidance=resolved.guidance,
            cfg_start=resolved.cfg_start,
            adapter_scale=resolved.control_scale,
            estimated_weights_gb=round(resident * dtype_bytes / 1024**3, 1),
        )
        return plan


def _schedule(recipe: Any, start: float, end: float, top: float) -> Any:
    """A value running linearly in the model's sigma from `start` (sigma_max) to `end` (sigma 0);
    a constant when both ends agree."""
    from studio.engines.supir.recipe import linear_schedule

    if start == end:
        return end
    return lambda t: linear_schedule(start, end, recipe.sigma_of(t), top)


def _name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def pair_names(model: str | None, adapter: str | None) -> tuple[str, str]:
    """(base, adapter) as given or as registry names: a composite name (e.g. supir-q = sdxl-base +
    supir-v0q) selects both; --adapter overrides the composite's adapter."""
    from studio import weights

    base, default_adapter = model or BASE_WEIGHTS, ADAPTER_WEIGHTS
    spec = weights.find(base)
    if spec is not None and (members := weights.composite_members(spec)):
        base, default_adapter = members[0], members[1]
    return base, adapter or default_adapter


def resolve_sources(settings: Settings) -> tuple[loading.ModelSource, AdapterSource]:
    """The SDXL base and the adapter (SUPIR checkpoint or ControlNet) as hub ids, folders or files (registry
    names looked up), the adapter's kind told from its key names when it is a file: a missing file raises
    WeightsMissing, one of no usable kind a one-line ModelLoadError/UsageError."""
    from studio.diffusion.identify import identify

    base, adapter = pair_names(settings.model, settings.adapter)
    return loading.resolve_source(_registry_ref(base)), identify(_registry_ref(adapter), adapter, "supir")


def _registry_ref(ref: str) -> str:
    from studio import weights

    spec = weights.find(ref)
    if spec is None:
        return ref
    return spec.hub_repo or str(weights.resolve(spec.name, spec.kind))


def load_supir(path: str, pipe: Any, dtype: Any, vae_dtype: Any) -> Any:
    """SUPIR-v0Q/v0F (adaptor, connectors, denoise encoder) on top of the SDXL base, strictly mapped."""
    from studio.engines.supir import networks as official

    state = loading.load_weights_file(path, "supir-v0q")
    adapter = official.load_official(state, path, pipe.unet.config, pipe.vae.config, dtype)
    adapter.denoise_encoder.to(vae_dtype)
    return adapter
