"""The `onestep` engine: one-step diffusion restoration (OSEDiff by default) on the shared diffusion core.

What runs is chosen by `--model` and `--adapter`:
- `--model osediff` (the default; a method name from models.py): its default base (SD 2.1-base) and
  weights file (the registry's `osediff-sd21base`, or the file --adapter names);
- `--model BASE --adapter FILE`: any diffusers base (folder, hub id or single file) with a method's
  weights file in its authors' layout; the method is told by the file's top-level keys.

Per image: the method's `prepare`, stage 1 (the input resized to the output size with the method's
filter, padded to its size multiple), the one-step recipe (recipe.py: tiled encode, one UNet
evaluation per latent window, x0, tiled decode), the crop back to the output size. Colour fix, faces
and fallback are the runner's, as for every engine (colour fix default: wavelet).

Fidelity mapping (`--fidelity f`, 0-1; a raw --pull beats it; provenance records the resolved value):

    pull = f            x0 moved that fraction toward the stage-1 latent (1: the stage-1 image
                        through the method's VAE, no generated detail)
    pull = 1 - s        from --strength s when given (and --fidelity is not): how much the step may change

Without either: pull 0 (the method as trained). Measured on the tiny photo-trained VAE (tests/engines/
onestep/test_onestep_fidelity.py): PSNR to stage 1 rises monotonically with f (README has the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.devices import compute_dtype, free_memory_bytes, resolve_device
from studio.diffusion import loading
from studio.diffusion.caption import Captioner, fill_caption
from studio.diffusion.latent_tiling import LATENT_OVERLAP, retry_overlap
from studio.diffusion.memory import run_shrinking_tiles, tile_ladder
from studio.diffusion.offload import Placement
from studio.engines.base import (
    NO_CONTEXT,
    ONESTEP_SETTINGS,
    Availability,
    Engine,
    EngineResult,
    ProgressFn,
    RestoreContext,
    output_size,
)
from studio.engines.onestep.files import top_level_keys
from studio.engines.onestep.method import MethodSpec, OneStepModel
from studio.engines.onestep.models import METHODS, find_method
from studio.engines.onestep.recipe import OneStepRecipe, OneStepRequest
from studio.errors import InputError, ModelLoadError, UsageError, WeightsMissing
from studio.ops.resize import resize
from studio.settings import Settings, layer_rank

DEFAULT_MODEL = METHODS[0].name
REFERENCE_TILE = 96  # latent cells: the authors' --latent_tiled_size (768 px)
VAE_TILE = 64  # latent cells per VAE tile when a whole-image pass would take over half the free memory
MIN_SIDE = 8
READS = frozenset({"prompt", "offload", "strength", "adapter", "pull", "caption", "caption_model", "dtype"})
"""Diffusion settings of other groups the engine reads (one step: no --steps, --guidance, --scheduler; the
methods' guidance and negative prompt are their own)."""


@dataclass(frozen=True)
class Selection:
    """The method, its base (registry name, hub id, folder or file) and weights file a run uses."""

    method: MethodSpec
    base: str
    adapter: str


def select(settings: Settings) -> Selection:
    """--model (a method name, or a base with --adapter) -> method + base + weights file."""
    model = settings.model or DEFAULT_MODEL
    method = find_method(model)
    if method is not None:
        return Selection(method, method.default_base, settings.adapter or method.default_weights)
    if not settings.adapter:
        names = ", ".join(spec.name for spec in METHODS)
        raise UsageError(f"--model {model}: a base model needs --adapter (a one-step weights file), or use {names}")
    keys = top_level_keys(_adapter_path(settings.adapter), "one-step weights file")
    for spec in METHODS:
        if spec.layout_of(keys):
            return Selection(spec, model, settings.adapter)
    sample = ", ".join(sorted(keys)[:3]) or "none"
    raise ModelLoadError(
        f"--adapter {settings.adapter}: not a weights file of {', '.join(s.name for s in METHODS)} "
        f"(its keys: {sample}, ...)"
    )


def _adapter_path(adapter: str) -> str:
    """A registry name -> its local file; a path unchanged."""
    return loading.registry_ref(adapter)


def pull_knob(settings: Settings) -> tuple[float, str]:
    """(pull, why): --pull > --fidelity > --strength given by the user > 0."""
    if settings.pull is not None:
        return float(settings.pull), settings.source_of("pull")
    if settings.fidelity is not None:
        return float(settings.fidelity), f"fidelity {settings.fidelity}"
    if layer_rank(settings.source_of("strength")) > 0:
        return 1.0 - float(settings.strength), f"strength {settings.strength}"
    return 0.0, "default"


@dataclass(frozen=True)
class Loaded:
    recipe: OneStepRecipe
    model: OneStepModel
    attention: str
    check: str


class OneStepEngine(Engine):
    """One-step diffusion SR: one UNet evaluation per latent window (see the module docstring)."""

    name = "onestep"
    summary = "one-step diffusion (OSEDiff: SD 2.1-base + LoRA), one UNet evaluation per window"
    default_color_fix = "wavelet"
    owns_fidelity = True
    default_model = DEFAULT_MODEL
    diffusion = True
    auto_rank = -1  # before sd-x4: first diffusion choice with a GPU and its weights (README: the figures)
    auto_needs_gpu = True
    checkpoint_name = "OSEDiff"

    @classmethod
    def checkpoint_layout(cls, keys: Any) -> str | None:
        return next((layout for spec in METHODS if (layout := spec.layout_of(keys))), None)

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        return ONESTEP_SETTINGS | READS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.selection = select(settings)
        self._loaded: Loaded | None = None
        self._captioner: Captioner | None = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """diffusers importable, base and weights file here; the file checked key by key against the base's
        configs (header only, no tensors read), so --dry-run and the run stop on the same line. A file of
        the wrong kind, unreadable or not fitting the base raises (exit 2): no fallback would fix it."""
        name = settings.model or DEFAULT_MODEL
        hint = f"run `studio weights pull {name}`" if find_method(name) else "check --adapter"
        try:
            selection = select(settings)
        except WeightsMissing as exc:
            return Availability(False, f"{exc}; {hint}")

        def locate() -> loading.ModelSource:
            return loading.resolve_source(loading.registry_ref(selection.base))

        found = loading.availability(locate, name if find_method(name) else selection.base, settings.device)
        if found.ok:
            try:
                selection.method.check(locate(), _adapter_path(selection.adapter))
            except WeightsMissing as exc:
                return Availability(False, f"{exc}; {hint}")
        return found

    # loading ---------------------------------------------------------------------------------------
    def _load(self) -> Loaded:
        if self._loaded is None:
            device = resolve_device(self.settings.device)
            dtype = compute_dtype(device, self.settings.dtype)
            method, adapter = self.selection.method, _adapter_path(self.selection.adapter)
            base = loading.resolve_source(loading.registry_ref(self.selection.base))
            verdict = method.check(base, adapter)
            model = method.load(base, adapter, dtype, self.settings.fuse_lora)
            attention = loading.enable_fast_attention(model.components.unet, device)
            recipe = OneStepRecipe(model, method.facts, Placement(self.settings.offload, device), dtype)
            self._loaded = Loaded(recipe, model, attention, verdict)
        return self._loaded

    # running ---------------------------------------------------------------------------------------
    def stage1(self, image: np.ndarray, scale: float) -> np.ndarray:
        """The input at the output size with the method's filter, padded to its size multiple."""
        out_h, out_w = output_size(*image.shape[:2], scale)
        facts = self.selection.method.facts
        resized = resize(image, out_h, out_w, facts.stage1_resize)
        multiple = max(facts.size_multiple, 8)
        pad = ((0, -out_h % multiple), (0, -out_w % multiple), (0, 0))
        return np.pad(resized, pad, mode=facts.pad_mode) if any(p[1] for p in pad) else resized

    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise InputError(f"image {width}x{height}: the onestep engine needs at least {MIN_SIDE} px a side")
        loaded = self._load()
        recipe, facts = loaded.recipe, self.selection.method.facts
        loaded.model.prepare(image)
        out_h, out_w = output_size(height, width, scale)
        padded = self.stage1(image, scale)
        prompt, caption = self.prompt_for(image, recipe)
        pull = pull_knob(self.settings)
        factor = recipe.components.vae_scale_factor
        latent = (padded.shape[0] // factor, padded.shape[1] // factor)
        unet_tile, overlap, vae_tile = self.tiles(latent, free_memory_bytes(recipe.device))

        def attempt(tiles: tuple[int, int]) -> tuple[OneStepRequest, np.ndarray]:
            request = OneStepRequest(
                prompt=prompt,
                negative_prompt=facts.negative_prompt or "",
                guidance=facts.guidance,
                seed=self.settings.seed,
                pull=pull[0],
                unet_tile=tiles[0],
                tile_overlap=retry_overlap(tiles[0], unet_tile, overlap),
                vae_tile=tiles[1],
            )
            return request, recipe(padded, request, progress)[:out_h, :out_w]

        attempts = tile_ladder(unet_tile, vae_tile, *latent)
        (request, result), retries = run_shrinking_tiles(attempt, attempts, recipe.device, self.name)
        info = self.provenance(loaded, request, pull, caption, retries)
        return EngineResult(result, info, color_reference=padded[:out_h, :out_w])

    def prompt_for(self, image: np.ndarray, recipe: OneStepRecipe) -> tuple[str, str | None]:
        """(prompt, caption): the method's fixed prompt, else --prompt/preset, with --caption's caption in it."""
        facts = self.selection.method.facts
        if facts.prompt is not None:
            return facts.prompt, None
        if not self.settings.caption:
            return fill_caption(self.settings.prompt, ""), None
        if self._captioner is None:
            between = "none" if self.settings.offload == "none" else "model"
            self._captioner = Captioner(self.settings.caption_model, Placement(between, recipe.device))
        caption = self._captioner.caption(image)
        return fill_caption(self.settings.prompt, caption), caption

    def tiles(self, latent: tuple[int, int], free_bytes: int) -> tuple[int, int, int]:
        """(UNet tile, overlap, VAE tile) in latent cells. --tile/--tile-overlap are stage-1 pixels, 0 = off.
        Default: the authors' 96-cell windows with the shared grid's overlap (LATENT_OVERLAP, feathered)."""
        if self.settings.tile == 0:
            return 0, 0, 0
        factor = 8
        tile = self.settings.tile // factor if self.settings.tile else REFERENCE_TILE
        if layer_rank(self.settings.source_of("tile_overlap")) == 0:
            overlap = min(LATENT_OVERLAP, tile // 4)
        else:
            overlap = min(self.settings.tile_overlap // factor, tile // 2)
        unet_tile = tile if max(latent) > tile else 0
        vae_tile = VAE_TILE if latent[0] * latent[1] * factor**2 * 4_000 > free_bytes * 0.5 else 0
        return unet_tile, overlap if unet_tile else 0, vae_tile

    def provenance(
        self, loaded: Loaded, request: OneStepRequest, pull: tuple[float, str], caption: str | None, retries: list[str]
    ) -> dict[str, Any]:
        recipe, method = loaded.recipe, self.selection.method
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.settings.model or DEFAULT_MODEL,
            "method": method.name,
            "base": self.selection.base,
            "adapter": self.selection.adapter,
            "license": method.license,
            **loaded.model.describe(),
            "prompt": request.prompt,
            "prompt_source": _prompt_source(method, self.settings, caption),
            "negative_prompt": request.negative_prompt,
            "guidance": request.guidance,
            "seed": request.seed,
            "timestep": method.facts.timestep,
            "unet_evaluations_per_window": 2 if request.guidance > 1 else 1,
            "stage1": method.facts.stage1_resize,
            "pull": pull[0],
            "resolved_from": {"pull": pull[1]},
            "tile": request.unet_tile * 8,
            "tile_overlap": request.tile_overlap * 8,
            "vae_tile": request.vae_tile,
            "dtype": str(recipe.dtype).replace("torch.", ""),
            "device": str(recipe.device),
            "offload": recipe.placement.mode,
            "attention": loaded.attention,
        }
        if caption is not None:
            info["caption"] = caption
        if retries:
            info["memory_retries"] = retries
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """For --dry-run: the method, its files and what stage 1 and the fidelity pull will be."""
        method = self.selection.method
        return {
            **super().plan(height, width, scale),
            "method": method.name,
            "base": self.selection.base,
            "adapter": self.selection.adapter,
            "stage1": f"{method.facts.stage1_resize}, padded to a multiple of {method.facts.size_multiple}",
            "unet_evaluations_per_window": 2 if method.facts.guidance > 1 else 1,
            "pull": pull_knob(self.settings)[0],
            "license": method.license,
        }


def _prompt_source(method: MethodSpec, settings: Settings, caption: str | None) -> str:
    if method.facts.prompt is not None:
        return f"{method.name}'s fixed prompt"
    if caption:
        return "captioner (--caption)" + (" + --prompt/preset" if settings.prompt else "")
    return "--prompt/preset" if settings.prompt else "none (empty prompt; OSEDiff's DAPE tagger is not included)"
