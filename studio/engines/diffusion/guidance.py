"""Denoiser callables and the wrappers that build them (k-diffusion style: samplers see one callable).

A *conditioned model* is `model(x, t, embeds, window) -> prediction`; a *denoiser* is
`denoiser(x, t, window) -> prediction`. `window` is the latent region `x` was cut from (None: the
whole latent) so models with spatial conditioning (the x4 UNet's low-res image) can cut theirs to match.
Guidance turns a conditioned model into a denoiser; tiling (latent_tiling) wraps a denoiser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch

    from studio.engines.diffusion.latent_tiling import Window

ConditionedModel = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", Optional["Window"]], "torch.Tensor"]
Denoiser = Callable[["torch.Tensor", "torch.Tensor", Optional["Window"]], "torch.Tensor"]


def classifier_free_guidance(
    model: ConditionedModel, cond: torch.Tensor, uncond: torch.Tensor, scale: float
) -> Denoiser:
    """uncond + scale * (cond - uncond) (Ho & Salimans, 2022), both branches in one batched call.

    The batch order [uncond, cond] matches diffusers' pipelines so results agree to the last bit.
    """
    import torch

    embeds = torch.cat([uncond, cond])

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        out_uncond, out_cond = model(torch.cat([x, x]), t, embeds, window).chunk(2)
        return out_uncond + scale * (out_cond - out_uncond)

    return denoise


def conditioned_only(model: ConditionedModel, cond: torch.Tensor) -> Denoiser:
    """No guidance: one branch with the prompt's embedding."""

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        return model(x, t, cond, window)

    return denoise


def guided(model: ConditionedModel, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> Denoiser:
    """Guidance above 1 runs both branches (as diffusers does); at 1 or below only the conditional one."""
    return classifier_free_guidance(model, cond, uncond, scale) if scale > 1.0 else conditioned_only(model, cond)
