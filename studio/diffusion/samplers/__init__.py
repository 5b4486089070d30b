"""Samplers: how latents travel from noise (or a noised image) to a clean latent.

Two families behind one interface (`Sampler`), so a recipe's loop does not care which runs:
- `schedulers`: diffusers schedulers (DDIM, DPM++, Euler, ...) over a denoiser of (x, t, window).
- `edm`: k-diffusion-style loops over an x0 denoiser of sigma (Euler with churn, a hook on x0 each step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import Denoiser

StepCallback = Callable[[int, "torch.Tensor"], None]
"""on_step(index, latents): called after each step with the latents it produced."""


class Sampler(Protocol):
    """What a recipe needs from a sampler; built per call (it holds the step schedule)."""

    @property
    def steps(self) -> int:
        """How many steps `sample` runs (one progress unit each)."""

    def initial_latents(self, noise: torch.Tensor, image_latents: torch.Tensor | None = None) -> torch.Tensor:
        """Pure noise scaled to the first step, or image latents noised to the first step (img2img)."""

    def sample(self, denoiser: Denoiser, latents: torch.Tensor, on_step: StepCallback) -> torch.Tensor:
        """Run every step and return the final latents."""
