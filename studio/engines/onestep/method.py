"""The protocol between the `onestep` engine and each one-step model it runs (OSEDiff, S3Diff, ...).

A one-step method restores in one UNet evaluation: the stage-1 image (the input resized to the output
size) is VAE-encoded, the UNet runs once at a fixed timestep on that latent, the clean latent x0 is
read off the prediction, and the VAE decodes it. The engine owns everything the methods share (stage 1,
padding, tiled VAE encode/decode, latent tiling and blending, x0 step, fidelity pull, colour fix, OOM
ladder, provenance); a method owns only what differs, through the objects below:

- `MethodFacts`: constants the engine reads before loading anything (stage-1 filter, size multiple and
  padding, timestep, guidance and fixed prompts, whether the posterior is sampled).
- `MethodSpec`: one registry entry per method: its default base and weights names, a header-only
  `check` of the weights file (the same verdict in --dry-run and the real run), and `load`.
- `OneStepModel`: what `load` returns: diffusers components with the method's weights already
  applied (LoRA through PEFT), a per-image `prepare` hook, and the conditioned model the engine
  tiles and guides.

The engine calls, per image: `prepare(lq)` once (S3Diff estimates the degradation of the input here
and sets its LoRA modulation; OSEDiff does nothing), then the shared recipe: encode the stage-1 image
with `components.vae` (the VAE carries the method's encoder LoRA), `conditioned_model()` on each latent
window (one evaluation per window, two batched when `facts.guidance > 1`), x0 from the blended
prediction at `facts.timestep`, decode with `components.vae`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

    from studio.diffusion.guidance import ConditionedModel
    from studio.diffusion.loading import ModelSource
    from studio.diffusion.recipe import Components


@dataclass(frozen=True)
class MethodFacts:
    """What the engine must know about a method before loading it.

    stage1_resize: the filter that brings the input to the output size (`studio.ops.resize` names;
        OSEDiff "bicubic", S3Diff "bilinear").
    size_multiple: sides of the stage-1 image must divide by this (OSEDiff 8, the VAE; S3Diff 64);
        the engine pads with `pad_mode` ("symmetric" mirrors including the edge pixel, "reflect"
        excludes it, as numpy names them) and crops the result back.
    timestep: the one timestep the UNet runs at (999 for both).
    guidance: classifier-free guidance scale; above 1 the UNet runs on [negative, positive] batched
        (S3Diff 1.07). 1: the conditional branch only (OSEDiff).
    prompt / negative_prompt: fixed prompts the method was trained with (S3Diff); prompt None: the user's
        (--prompt, presets, --caption); negative_prompt None: empty (no method reads the user's).
    sample_posterior: encode by sampling the VAE posterior (seeded by --seed) rather than taking its mean.
    authors_color_fix: the colour fix the authors' script applies by default (recorded in provenance
        and docs; the engine's own default is wavelet for every method).
    """

    stage1_resize: str
    size_multiple: int
    pad_mode: str = "symmetric"
    timestep: int = 999
    guidance: float = 1.0
    prompt: str | None = None
    negative_prompt: str | None = None
    sample_posterior: bool = True
    authors_color_fix: str = "wavelet"


class OneStepModel(Protocol):
    """A loaded one-step method. Engines keep no per-call state, so `prepare` state lives here and is
    overwritten by the next image's `prepare`."""

    components: Components
    """vae (its encoder may carry the method's LoRA), text_encoder, tokenizer, unet (LoRA applied), and
    the base's scheduler (its `alphas_cumprod` and `prediction_type` give the x0 step)."""

    def prepare(self, lq: np.ndarray) -> None:
        """Per-image state from the low-quality input ((H, W, 3) float32 in [0, 1], before stage 1)."""

    def conditioned_model(self) -> ConditionedModel:
        """`model(x, t, cond, window) -> prediction` (epsilon or v, as the scheduler says) for one
        latent window; `cond` holds `encoder_hidden_states` (crop spatial entries with the window)."""

    def describe(self) -> dict[str, Any]:
        """Provenance: weights file, its hash, LoRA ranks and scale, whether fused, prompt source."""


@dataclass(frozen=True)
class MethodSpec:
    """One entry of the onestep engine's method list (an explicit registry, see models.py).

    default_base / default_weights: weights-registry names `--model NAME` uses (--adapter replaces the second).
    layout_of(keys): 'official' when a weights file's top-level keys are this method's (how
        `--model BASE --adapter FILE` tells the method), else None.
    check(base, adapter_path): read only the file's header/index (and the base's configs, building its
        modules on the meta device) and raise `ModelLoadError` naming the first key or shape that does
        not fit (`WeightsMissing` when a file is absent); returns a one-line description for --dry-run.
        The real load applies the same checks.
    load(base, adapter_path, dtype, fuse): the base's components with the method's weights applied
        (LoRA merged into the base layers when `fuse`).
    """

    name: str
    summary: str
    facts: MethodFacts
    default_base: str
    default_weights: str
    license: str
    layout_of: Callable[[Collection[str]], str | None]
    check: Callable[[ModelSource, str], str]
    load: Callable[[ModelSource, str, torch.dtype, bool], OneStepModel]
