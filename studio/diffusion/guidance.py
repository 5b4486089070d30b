"""Denoiser callables and the wrappers that build them (k-diffusion style: samplers see one callable).

A *conditioned model* is `model(x, t, cond, window) -> prediction` where `cond` is a `Conditioning`
(named tensors); a *denoiser* is `denoiser(x, t, window) -> prediction`. `window` is the latent region
`x` was cut from (None: the whole latent); the model cuts its spatial conditioning with `cond.crop(window)`.
Guidance turns a conditioned model into a denoiser; tiling (latent_tiling) and the EDM x0 wrappers
(samplers.edm) wrap a denoiser.

The guidance scale may be a number or a function of the timestep tensor `t` (e.g. SUPIR's scale that
grows linearly with sigma: map t to sigma inside the function).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch

    from studio.diffusion.conditioning import Conditioning
    from studio.diffusion.latent_tiling import Window

ConditionedModel = Callable[["torch.Tensor", "torch.Tensor", "Conditioning", Optional["Window"]], "torch.Tensor"]
Denoiser = Callable[["torch.Tensor", "torch.Tensor", Optional["Window"]], "torch.Tensor"]
Scale = float | Callable[["torch.Tensor"], float]
"""A constant, or a function of the timestep tensor (a schedule over the steps)."""


def scale_at(scale: Scale, t: torch.Tensor) -> float:
    """The value of a constant-or-scheduled scale at timestep `t`."""
    return scale(t) if callable(scale) else scale


def classifier_free_guidance(
    model: ConditionedModel, cond: Conditioning, uncond: Conditioning, scale: Scale
) -> Denoiser:
    """uncond + scale * (cond - uncond) (Ho & Salimans, 2022), both branches in one batched call.

    The batch order [uncond, cond] matches diffusers' pipelines so results agree to the last bit.
    """
    import torch

    both = uncond.batch(cond)

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        out_uncond, out_cond = model(torch.cat([x, x]), t, both, window).chunk(2)
        return out_uncond + scale_at(scale, t) * (out_cond - out_uncond)

    return denoise


def conditioned_only(model: ConditionedModel, cond: Conditioning) -> Denoiser:
    """No guidance: one branch with the prompt's conditioning."""

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        return model(x, t, cond, window)

    return denoise


def uses_negative(scale: Scale) -> bool:
    """Guidance above 1 (or scheduled) runs both branches, as diffusers does; at 1 or below only the
    conditional one, so the negative prompt need not be encoded."""
    return callable(scale) or scale > 1.0


def guided(model: ConditionedModel, cond: Conditioning, uncond: Conditioning, scale: Scale) -> Denoiser:
    """Classifier-free guidance when `uses_negative(scale)`, else the conditional branch alone."""
    if uses_negative(scale):
        return classifier_free_guidance(model, cond, uncond, scale)
    return conditioned_only(model, cond)
