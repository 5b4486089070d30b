"""The `stablesr` engine: StableSR (official weights, S-Lab non-commercial licence) or its permissive
tile-ControlNet variant, on the shared recipe (stablesr_recipe.py).

What runs is chosen by `--model` and `--adapter`:
- `--model stablesr-512` / `stablesr-768v` (registry composites): SD 2.1 base + the official StableSR file(s);
- `--model stablesr-tile-sd15` (the permissive default pair): SD 1.5 + lllyasviel's tile ControlNet;
- `--model BASE --adapter A[,B]`: any SD 1.x/2.x base (hub id, folder, single file) with, per adapter, an
  official StableSR checkpoint (full, adapter-only or CFW file) or a ControlNet (folder, hub id, or one file
  in diffusers' or the original layout); a file's kind is told by its keys (adapters/identify.py).

The input first reaches the output size (`--stage1 fast|lanczos|none`); its latent both conditions the model
and is where sampling starts (noised to the first timestep run).

Fidelity mapping (`--fidelity f`, 0-1; a raw flag given beats it; provenance records the resolved values):

    cfw (w)         = f                 (only when CFW weights are loaded; otherwise CFW is off)
    pull            = f                 (x0 pulled that fraction toward the stage-1 latent every step)
    denoise         = 1 - 0.5 f         (the schedule fraction run: from the last timestep at f = 0)
    adapter scale   = 1                 (the trained scale; above it the modulation extrapolates)

Without --fidelity: cfw 0.5 when loaded (the reference's default), pull 0, denoise 1, adapter scale 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from studio.devices import compute_dtype, free_memory_bytes, resolve_device
from studio.diffusion import loading
from studio.diffusion.controlnet_files import load_controlnet
from studio.diffusion.latent_tiling import LATENT_OVERLAP, retry_overlap
from studio.diffusion.memory import run_shrinking_tiles, tile_ladder
from studio.diffusion.offload import Placement
from studio.diffusion.recipe import Components
from studio.diffusion.samplers.schedulers import check_scheduler_name, scheduler_label
from studio.engines.base import (
    ADAPTER_SETTINGS,
    NO_CONTEXT,
    SAMPLING_SETTINGS,
    STABLESR_SETTINGS,
    Availability,
    Engine,
    EngineResult,
    ProgressFn,
    RestoreContext,
)
from studio.engines.stablesr.components import finish, meta_modules, standalone_components
from studio.engines.stablesr.keys import layout_of
from studio.engines.stablesr.recipe import CFWDecoder, StableSRRecipe, StableSRRequest
from studio.engines.stablesr.selection import (
    DEFAULT_MODEL,
    check_combination,
    identify_adapters,
    module_configs,
    part_kinds,
    select,
)
from studio.engines.stage1 import describe_stage1, stage1_image
from studio.errors import InputError, UsageError, WeightsMissing
from studio.ops.resize import pad_to_multiple
from studio.settings import Settings, layer_rank

TOKENIZER_SOURCE = "CLIP BPE merges shipped in configs/clip (OpenAI, MIT)"
DEFAULT_SCHEDULER = "dpm++"
REFERENCE_STEPS = 200  # the reference's DDPM sampling (README / app)
MIN_SIDE = 8
VAE_TILE = 64  # latent pixels per VAE decode tile when the image is large


def fidelity_knobs(settings: Settings, has_cfw: bool) -> dict[str, tuple[float, str]]:
    """Resolved (value, why) for cfw, pull, denoise and adapter_scale: raw flag > --fidelity > default."""
    f = settings.fidelity
    mapped = (
        {"cfw": f if has_cfw else 0.0, "pull": f, "denoise": 1.0 - 0.5 * f, "adapter_scale": 1.0}
        if f is not None
        else None
    )
    defaults = {"cfw": 0.5 if has_cfw else 0.0, "pull": 0.0, "denoise": 1.0, "adapter_scale": 1.0}
    knobs: dict[str, tuple[float, str]] = {}
    for name, default in defaults.items():
        raw = getattr(settings, name)
        if raw is not None:
            knobs[name] = (float(raw), settings.source_of(name))
        elif mapped is not None:
            knobs[name] = (float(mapped[name]), f"fidelity {f}")
        else:
            knobs[name] = (default, "default")
    return knobs


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The recipe, once built, and what loading chose (for provenance)."""

    recipe: StableSRRecipe
    adapters: list[dict[str, Any]]
    attention: str


class StableSREngine(Engine):
    """StableSR-style restoration: SD prior steered by the upscaled input, sampled in aggregated tiles."""

    name = "stablesr"
    summary = "StableSR (SD 2.1 + time-aware encoder, SPADE, CFW) or an SD tile-ControlNet; --fidelity steers"
    checkpoint_name = "StableSR"

    @classmethod
    def checkpoint_layout(cls, keys: Collection[str]) -> str | None:
        try:
            return layout_of(keys)
        except UsageError:
            return None

    default_color_fix = "wavelet"
    owns_fidelity = True
    default_model = DEFAULT_MODEL
    diffusion = True
    auto_rank = 1  # after sd-x4, when a GPU and its weights are here
    auto_needs_gpu = True

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        return SAMPLING_SETTINGS | ADAPTER_SETTINGS | STABLESR_SETTINGS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        check_scheduler_name(settings.scheduler)
        self.selection = select(settings)
        self._loaded: Loaded | None = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """diffusers importable, base and adapters on disk (or a hub id); no loading. An adapter file of no
        kind this engine takes (read for its key names) raises: the run would stop on it too."""

        def locate() -> loading.ModelSource:
            selection = select(settings)
            return loading.resolve_source(loading.registry_ref(selection.base))

        found = loading.availability(
            locate, settings.model or DEFAULT_MODEL, settings.device, errors=(WeightsMissing, UsageError)
        )
        if found.ok:
            try:
                identify_adapters(select(settings))  # missing: unavailable; of no usable kind: exit 2
            except WeightsMissing as exc:
                return Availability(False, str(exc))
        return found

    @classmethod
    def check_files(cls, settings: Settings) -> None:
        """Before the first pixel, in a real run and in --dry-run alike: every official file's keys and shapes
        (read from its index, no tensor data) placed on meta modules exactly as loading will place them, and
        the adapters' combination; raises the one line the load itself would."""
        import torch

        from studio.engines.stablesr.files import check_file

        selection = select(settings)
        adapters = identify_adapters(selection)
        check_combination(part_kinds(selection, adapters))
        files = [(name, Path(a.ref)) for name, a in zip(selection.adapters, adapters) if a.kind == "stablesr"]
        if selection.standalone:
            files.insert(0, (selection.base, Path(loading.registry_ref(selection.base))))
        if not files:
            return
        unet, vae, text = meta_modules(module_configs(selection), torch.float32)
        for name, path in files:
            layout = check_file(path, name, unet, vae, text)
            if selection.standalone and name == selection.base and layout != "full":
                raise UsageError(
                    f"--model {selection.base}: {path} holds StableSR's {layout} layout, not the full model; "
                    "give an SD 2.1 base as --model and this file as --adapter"
                )

    # loading ---------------------------------------------------------------------------------------
    def _load(self) -> Loaded:
        if self._loaded is None:
            self._loaded = self._build()
        return self._loaded

    def _build(self) -> Loaded:
        from studio.engines.stablesr.files import apply_file  # reads torch networks

        device = resolve_device(self.settings.device)
        dtype = compute_dtype(device)
        adapters = identify_adapters(self.selection)
        check_combination(part_kinds(self.selection, adapters))
        components, adapter, records = self._base(dtype)
        cfw = None
        for name, found in zip(self.selection.adapters, adapters):
            if found.kind == "stablesr":
                loaded = apply_file(Path(found.ref), name, components.unet, components.vae, components.text_encoder)
                adapter = loaded.adapter or adapter
                if loaded.cfw is not None:
                    cfw = CFWDecoder(loaded.cfw_vae, loaded.cfw)
            else:
                components.controlnets.append(load_controlnet(found.ref, components.unet, name, dtype))
            records.append({"adapter": name, **found.record()})
        attention = loading.enable_fast_attention(components.unet, device)
        recipe = StableSRRecipe(components, Placement(self.settings.offload, device), dtype, adapter, cfw)
        return Loaded(recipe, records, attention)

    def _base(self, dtype: Any) -> tuple[Components, Any, list[dict[str, Any]]]:
        """(components, adapter or None, provenance records): a full official file alone (modules built from
        the shipped configs, its tensors assigned one at a time), or a diffusers SD base."""
        from diffusers import StableDiffusionPipeline

        from studio.engines.stablesr.files import apply_file

        selection = self.selection
        if not selection.standalone:
            weights_name = self.settings.model or DEFAULT_MODEL
            base_source = loading.resolve_source(loading.registry_ref(selection.base))
            pipe = loading.load_pipeline(StableDiffusionPipeline, base_source, weights_name, dtype)
            return Components(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler), None, []
        components = standalone_components(dtype, selection.prediction)
        path = Path(loading.registry_ref(selection.base))
        loaded = apply_file(path, selection.base, components.unet, components.vae, components.text_encoder)
        finish(components)
        record = {"adapter": selection.base, "source": str(path), "where": "file", "kind": "stablesr"}
        return components, loaded.adapter, [{**record, "layout": loaded.layout, "tokenizer": TOKENIZER_SOURCE}]

    # running ---------------------------------------------------------------------------------------
    def stage1(self, image: np.ndarray, scale: float, context: RestoreContext = NO_CONTEXT) -> tuple[np.ndarray, str]:
        """The input at the output size, made by --stage1 (default: the fast engine the runner lends)."""
        return stage1_image(image, scale, self.settings.stage1, "fast", context.stage1_upscaler)

    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise InputError(f"image {width}x{height}: the stablesr engine needs at least {MIN_SIDE} px a side")
        loaded = self._load()
        recipe = loaded.recipe
        stage1, stage1_mode = self.stage1(image, scale, context)
        out_h, out_w = stage1.shape[:2]
        multiple = recipe.size_multiple
        padded = pad_to_multiple(stage1, multiple)
        del stage1  # the padded copy (or the image itself) is all the recipe reads
        knobs = fidelity_knobs(self.settings, recipe.cfw is not None)
        latent = (padded.shape[0] // multiple, padded.shape[1] // multiple)
        unet_tile, overlap, vae_tile = self.tiles(latent, recipe, free_memory_bytes(recipe.device))
        scale_knob = knobs["adapter_scale"][0]

        def attempt(tiles: tuple[int, int]) -> tuple[StableSRRequest, np.ndarray]:
            request = StableSRRequest(
                prompt=self.settings.prompt,
                negative_prompt=self.settings.negative_prompt,
                steps=self.settings.steps,
                guidance=self.settings.guidance,
                seed=self.settings.seed,
                scheduler=self.settings.scheduler or DEFAULT_SCHEDULER,
                strength=knobs["denoise"][0],
                pull=knobs["pull"][0],
                cfw=knobs["cfw"][0],
                adapter_scale=scale_knob,
                control_scales=(scale_knob,) * len(recipe.components.controlnets),
                unet_tile=tiles[0],
                tile_overlap=retry_overlap(tiles[0], unet_tile, overlap),
                vae_tile=tiles[1],
            )
            return request, recipe(padded, request, progress)[:out_h, :out_w]

        attempts = tile_ladder(unet_tile, vae_tile, *latent)
        (request, result), retries = run_shrinking_tiles(attempt, attempts, recipe.device, self.name)
        return EngineResult(result, self.provenance(loaded, request, knobs, stage1_mode, retries))

    def tiles(self, latent: tuple[int, int], recipe: Any, free_bytes: int) -> tuple[int, int, int]:
        """(UNet tile, overlap, VAE tile) in latent pixels for this run (see `default_tiling`)."""
        return default_tiling(
            self.settings, latent, recipe.size_multiple, int(recipe.components.unet.config.sample_size), free_bytes
        )

    def provenance(
        self,
        loaded: Loaded,
        request: StableSRRequest,
        knobs: dict[str, tuple[float, str]],
        stage1: str,
        retries: list[str],
    ) -> dict[str, Any]:
        """Everything needed to reproduce one restore, and where each fidelity knob came from."""
        recipe = loaded.recipe
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.settings.model or DEFAULT_MODEL,
            "base": self.selection.base,
            "adapters": loaded.adapters or list(self.selection.adapters),
        }
        if self.selection.license:
            info["license"] = self.selection.license
        info.update(
            variant="stablesr" if recipe.adapter is not None else "controlnet",
            prediction_type=recipe.components.scheduler.config.prediction_type,
            scheduler=scheduler_label(request.scheduler, recipe.components.scheduler),
            steps=request.steps,
            reference_steps=REFERENCE_STEPS,
            guidance=request.guidance,
            seed=request.seed,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            stage1=stage1,
            **{name: value for name, (value, _) in knobs.items()},
            resolved_from={name: why for name, (_, why) in knobs.items()},
            tile=request.unet_tile * recipe.size_multiple,  # pixels, as --tile
            tile_overlap=request.tile_overlap * recipe.size_multiple,
            latent_tile=request.unet_tile,
            vae_tile=request.vae_tile,
            dtype=str(recipe.dtype).replace("torch.", ""),
            device=str(recipe.device),
            offload=recipe.placement.mode,
            attention=loaded.attention,
        )
        if retries:
            info["memory_retries"] = retries
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """For --dry-run: the base plan and what stage 1 will do."""
        return {**super().plan(height, width, scale), "stage1": describe_stage1(self.settings.stage1, "fast")}


def default_tiling(
    settings: Settings, latent: tuple[int, int], factor: int, native: int, free_bytes: int
) -> tuple[int, int, int]:
    """(UNet tile, overlap, VAE tile) in latent pixels; --tile/--tile-overlap are output pixels, 0 = off.

    Default: windows of at most twice the UNet's native size (128 latent px = 1024 px for the 512 model),
    neighbours sharing LATENT_OVERLAP cells (the smallest seam-free overlap the tiling benchmark measured);
    the shared grid shrinks the windows to the cells the overlaps need. The reference's 64/32 windows cost
    2.3-3.5x the no-overlap minimum of UNet work (benchmarks/bench_stablesr.py); `--tile 512 --tile-overlap
    128` restores them. The VAE is tiled (64 latent px) when a whole-image decode would take more than half
    the free memory.
    """
    if settings.tile == 0:
        return 0, 0, 0
    tile = settings.tile // factor if settings.tile else 2 * native
    if layer_rank(settings.source_of("tile_overlap")) == 0:
        overlap = min(LATENT_OVERLAP, tile // 4)
    else:
        overlap = min(settings.tile_overlap // factor, tile // 2)
    unet_tile = tile if max(latent) > tile else 0
    vae_tile = VAE_TILE if latent[0] * latent[1] * factor**2 * 4_000 > free_bytes * 0.5 else 0
    return unet_tile, overlap if unet_tile else 0, vae_tile
