"""The `supir` engine: an SDXL prior steered by the input, sampled with SUPIR's restoration guidance.

Two adaptors, one sampler (recipe.py):
- permissive (default): an SDXL tile ControlNet (`xinsir/controlnet-tile-sdxl-1.0`, Apache-2.0; a hub id,
  folder or one file) reads the stage-1 image x1 (the fast engine's upscale, or Lanczos);
- official: SUPIR-v0Q / v0F (non-commercial) given as `--adapter FILE`: the denoise encoder makes x1,
  the adaptor and ZeroSFT connectors steer SDXL (networks.py).
A file's kind (SUPIR checkpoint or ControlNet) is told by its key names (studio/diffusion/identify.py).

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
where it came from. The mapping, working size and tiles are in knobs.py.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio import weights
from studio.devices import CPU_BF16_FLAGS, compute_dtype, cpu_flags, free_memory_bytes, native_bf16, resolve_device
from studio.diffusion import loading
from studio.diffusion.caption import Captioner, fill_caption
from studio.diffusion.controlnet_files import load_controlnet
from studio.diffusion.identify import AdapterSource, identify
from studio.diffusion.memory import run_shrinking_tiles, tile_ladder
from studio.diffusion.offload import Placement
from studio.engines import research_checkpoints
from studio.engines.base import (
    ADAPTER_SETTINGS,
    NO_CONTEXT,
    SAMPLING_SETTINGS,
    SUPIR_SETTINGS,
    Availability,
    Engine,
    EngineResult,
    ProgressFn,
    RestoreContext,
    output_size,
)
from studio.engines.stage1 import describe_stage1, stage1_image
from studio.engines.supir.files import base_configs, load_supir, official_params
from studio.engines.supir.keys import is_official_checkpoint
from studio.engines.supir.knobs import (
    CONTROLNET_PARAMS,
    MIN_INPUT_SIDE,
    Resolved,
    choose_tiles,
    resident_weight_bytes,
    resolve_knobs,
    working_size,
)
from studio.engines.supir.recipe import SCHEDULERS, SDXLComponents, SupirRecipe, SupirRequest, linear_schedule
from studio.errors import InputError, UsageError
from studio.ops.resize import resize
from studio.settings import Settings

BASE_WEIGHTS = "sdxl-base"  # stabilityai/stable-diffusion-xl-base-1.0 (configs/weights.toml)
ADAPTER_WEIGHTS = "controlnet-tile-sdxl"  # xinsir/controlnet-tile-sdxl-1.0, Apache-2.0


@dataclass(frozen=True)
class Loaded:
    """The recipe, once built, and what loading chose (for provenance)."""

    recipe: SupirRecipe
    attention: str
    revision: str | None


@dataclass(frozen=True)
class Sampled:
    """One run: the diffusion result at the output size, the request that made it, and its inputs."""

    image: np.ndarray
    request: SupirRequest
    resolved: Resolved
    x1: np.ndarray  # the stage-1 image at the output size: the colour reference
    stage1: str
    work_size: list[int]
    memory_retries: list[str]
    caption: str | None


class SupirEngine(Engine):
    """SUPIR-style restoration on SDXL; see the module docstring for sizes and the strength mapping."""

    name = "supir"
    summary = "SDXL restoration with SUPIR's restoration-guided sampling (tile ControlNet or SUPIR weights)"
    default_color_fix = "wavelet"
    default_model = "supir-tile"  # sdxl-base + controlnet-tile-sdxl, both commercially usable
    diffusion = True  # never picked by `auto`: SDXL is the heaviest engine, chosen on purpose
    checkpoint_name = "SUPIR"
    bf16 = False  # SUPIR's reference samples in fp16 on GPUs

    @classmethod
    def checkpoint_layout(cls, keys: Collection[str]) -> str | None:
        return "official" if is_official_checkpoint(keys) else None

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        return SAMPLING_SETTINGS | ADAPTER_SETTINGS | SUPIR_SETTINGS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.scheduler not in (None, *SCHEDULERS):
            raise UsageError(
                f"--scheduler {settings.scheduler!r}: the supir engine samples with {' or '.join(SCHEDULERS)}"
            )
        self.source, self.adapter = resolve_sources(settings)
        self.official = self.adapter.kind == "supir"
        self.stage1_default = "lanczos" if self.official else "fast"  # official: the denoise encoder makes x1
        self._loaded: Loaded | None = None
        self._captioner: Captioner | None = None

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

    @classmethod
    def check_files(cls, settings: Settings) -> None:
        """An official SUPIR file's every key and shape, from its index (no tensor data), mapped onto meta
        modules built from the SDXL base's configs exactly as loading maps it: the same one line in --dry-run
        as in the run. A single-file base has no config to read offline: only the file's index is checked."""
        source, adapter = resolve_sources(settings)
        if adapter.kind != "supir" or source.kind == "file":
            return
        import torch

        from studio.engines.supir import networks as official
        from studio.weights.index import meta_state

        unet_config, vae_config = base_configs(source)
        state = meta_state(loading.weights_file_index(adapter.ref, "supir-v0q"))
        official.load_official(state, adapter.ref, unet_config, vae_config, torch.float32)

    # ------------------------------------------------------------------------------ settings
    def resolved(self) -> Resolved:
        """Each sampler setting from its flag when that flag's layer is at least --strength's, else mapped."""
        return resolve_knobs(self.settings)

    def dtypes(self, device: Any) -> tuple[Any, Any]:
        """(diffusion dtype, VAE dtype): --dtype, else fp16 on GPUs (SUPIR's reference samples in fp16) and
        fp32 on CPU; the VAE never in fp16: bf16 where the device runs it natively, else fp32."""
        import torch

        dtype = compute_dtype(device, self.settings.dtype, bf16=False)
        if dtype == torch.float32:
            return dtype, torch.float32
        bf16_ok = (
            bool(cpu_flags() & CPU_BF16_FLAGS) if device.type == "cpu" else device.type != "cuda" or native_bf16(device)
        )
        return dtype, torch.bfloat16 if bf16_ok else torch.float32

    def tiles(
        self, latent_h: int, latent_w: int, factor: int, dtype_bytes: int, free_bytes: int
    ) -> tuple[int, int, int]:
        """(UNet tile, overlap, VAE tile) in latent pixels; 0 = untiled (see `knobs.choose_tiles`)."""
        return choose_tiles(self.settings, latent_h, latent_w, factor, dtype_bytes, free_bytes)

    # ------------------------------------------------------------------------------ loading
    def _load(self) -> Loaded:
        if self._loaded is None:
            from diffusers import StableDiffusionXLPipeline

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
            recipe = SupirRecipe(components, Placement(self.settings.offload, device), dtype, vae_dtype)
            self._loaded = Loaded(recipe, attention, loading.snapshot_revision(self.source))
        return self._loaded

    # ------------------------------------------------------------------------------ restore
    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        """Stage 1 to the output size, diffusion at the working size, Lanczos back to the output size; the
        colour fix matches the stage-1 image x1."""
        run = self.sample(image, scale, progress, context)
        return EngineResult(run.image, self.provenance(self._load(), run), color_reference=run.x1)

    def sample(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> Sampled:
        """The diffusion run behind `restore`, with the request it made."""
        height, width = image.shape[:2]
        if min(height, width) < MIN_INPUT_SIDE:
            raise InputError(f"image {width}x{height}: the supir engine needs at least {MIN_INPUT_SIDE} px a side")
        out_h, out_w = output_size(height, width, scale)
        x1, stage1_mode = stage1_image(image, scale, self.settings.stage1, self.stage1_default, context.stage1_upscaler)
        recipe = self._load().recipe
        work_h, work_w = working_size(out_h, out_w, self.settings.min_side, recipe.size_multiple)
        factor = recipe.components.vae_scale_factor
        resolved = self.resolved()
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

        def attempt(tiles: tuple[int, int]) -> tuple[SupirRequest, np.ndarray]:
            request = SupirRequest(
                prompt=prompt,
                negative_prompt=self.settings.negative_prompt,
                steps=self.settings.steps,
                guidance=guidance,
                seed=self.settings.seed,
                control_scales=(control,),
                scheduler=self.settings.scheduler or "edm-euler",
                unet_tile=tiles[0],
                tile_overlap=min(overlap, tiles[0] // 2),
                vae_tile=tiles[1],
                tau=resolved.tau,
                churn=self.settings.churn,
                s_noise=self.settings.s_noise,
            )
            return request, recipe(conditioning_image, request, progress)

        attempts = tile_ladder(unet_tile, vae_tile, work_h // factor, work_w // factor)
        (request, result), retries = run_shrinking_tiles(attempt, attempts, recipe.device, self.name)
        reference = x1 if recipe.stage1_image is None else resize(recipe.stage1_image, out_h, out_w)
        if result.shape[:2] != (out_h, out_w):
            result = resize(result, out_h, out_w)
        return Sampled(result, request, resolved, reference, stage1_mode, [work_w, work_h], retries, caption)

    def prompt_for(self, image: np.ndarray, device: Any) -> tuple[str, str | None]:
        """(prompt, caption): with --caption the captioner fills {caption} (or leads the prompt)."""
        if not self.settings.caption:
            return fill_caption(self.settings.prompt, ""), None
        if self._captioner is None:
            between = "none" if self.settings.offload == "none" else "model"  # the captioner waits in RAM
            self._captioner = Captioner(self.settings.caption_model, Placement(between, device))
        caption = self._captioner.caption(image)
        return fill_caption(self.settings.prompt, caption), caption

    def provenance(self, loaded: Loaded, run: Sampled) -> dict[str, Any]:
        """Everything needed to reproduce one restore, with where each sampler value came from."""
        request, resolved, recipe = run.request, run.resolved, loaded.recipe
        factor = recipe.components.vae_scale_factor
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.source.ref,
            "model_kind": self.source.kind,
            "adapter": self.adapter.ref,
            "adapter_source": self.adapter.record(),
            "revision": loaded.revision,
        }
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
            stage1=run.stage1,
            work_size=run.work_size,
            tile=request.unet_tile * factor,  # pixels of the working image, as --tile
            tile_overlap=request.tile_overlap * factor,
            latent_tile=request.unet_tile,
            vae_tile=request.vae_tile,
            dtype=_name(recipe.dtype),
            vae_dtype=_name(recipe.vae_dtype),
            device=str(recipe.device),
            offload=recipe.placement.mode,  # what ran: every mode is "none" on a CPU
            attention=loaded.attention,
        )
        if run.memory_retries:
            info["memory_retries"] = run.memory_retries
        if run.caption is not None and self._captioner is not None:
            info.update(caption=run.caption, caption_model=self._captioner.model_ref)
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """Working size, tiles and the resolved sampler settings for --dry-run; loads nothing."""
        device = resolve_device(self.settings.device)
        dtype, vae_dtype = self.dtypes(device)
        dtype_bytes = dtype.itemsize
        out_h, out_w = output_size(height, width, scale)
        work_h, work_w = working_size(out_h, out_w, self.settings.min_side, 32)
        unet_tile, _, vae_tile = self.tiles(work_h // 8, work_w // 8, 8, dtype_bytes, free_memory_bytes(device))
        resolved = resolve_knobs(self.settings)
        text_resident = device.type == "cpu" or self.settings.offload != "encoders"
        resident = resident_weight_bytes(
            dtype_bytes,
            vae_dtype.itemsize,
            (official_params(self.adapter.ref) if self.official else (CONTROLNET_PARAMS, 0)),
            text_resident,
        )
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
            stage1=describe_stage1(self.settings.stage1, self.stage1_default),
            estimated_weights_gb=round(resident / 1024**3, 1),
        )
        return plan


def _schedule(recipe: Any, start: float, end: float, top: float) -> Any:
    """A value running linearly in the model's sigma from `start` (sigma_max) to `end` (sigma 0);
    a constant when both ends agree."""
    if start == end:
        return end
    return lambda t: linear_schedule(start, end, recipe.sigma_of(t), top)


def _name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def pair_names(model: str | None, adapter: str | None) -> tuple[str, str]:
    """(base, adapter) as given or as registry names: a composite name (e.g. supir-q = sdxl-base +
    supir-v0q) selects both; --adapter overrides the composite's adapter."""
    base, default_adapter = model or BASE_WEIGHTS, ADAPTER_WEIGHTS
    spec = weights.find(base)
    if spec is not None and (members := weights.composite_members(spec)):
        base, default_adapter = members[0], members[1]
    return base, adapter or default_adapter


def resolve_sources(settings: Settings) -> tuple[loading.ModelSource, AdapterSource]:
    """The SDXL base and the adapter (SUPIR checkpoint or ControlNet) as hub ids, folders or files (registry
    names looked up), the adapter's kind told from its key names when it is a file: a missing file raises
    WeightsMissing, one of no usable kind a one-line ModelLoadError/UsageError."""
    base, adapter = pair_names(settings.model, settings.adapter)
    return loading.resolve_source(loading.registry_ref(base)), identify(
        loading.registry_ref(adapter), adapter, "supir", research_checkpoints()
    )
