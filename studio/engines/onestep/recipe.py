"""The one-step recipe: the shared `Recipe` with the image's own latent as the start and one x0 step.

Differences from the default `Recipe`, each one overridden step:
- 4 `make_sampler`: `samplers.onestep.OneStepSampler` at the method's timestep (with the fidelity pull);
- 5 `initial_latents`: the stage-1 image's latent (tiled VAE encode through the method's LoRA'd
  encoder; a posterior sample seeded by --seed, or its mean, as the method says), no noise;
- 6 `conditioned_model`: the method's (OSEDiff: the plain UNet carrying its LoRA).
Prompt encoding, guidance, latent tiling and blending, and the tiled decode are the shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from studio.diffusion.recipe import Components, Recipe, Request
from studio.diffusion.samplers.onestep import OneStepSampler

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import ConditionedModel
    from studio.diffusion.offload import Placement
    from studio.diffusion.samplers import Sampler
    from studio.engines.onestep.method import MethodFacts, OneStepModel


@dataclass(frozen=True, kw_only=True)
class OneStepRequest(Request):
    """`pull`: fraction by which x0 moves toward the stage-1 latent (the fidelity lever; 0 = the method as is)."""

    steps: int = 1
    pull: float = 0.0


class OneStepRecipe(Recipe):
    """Runs a loaded one-step method on a stage-1 image whose sides divide by `size_multiple`."""

    def __init__(self, model: OneStepModel, facts: MethodFacts, placement: Placement, dtype: torch.dtype) -> None:
        components: Components = model.components
        super().__init__(components, placement, dtype)
        self.model = model
        self.facts = facts

    @property
    def size_multiple(self) -> int:
        return max(self.facts.size_multiple, self.components.vae_scale_factor)

    def make_sampler(self, request: Request, generator: torch.Generator) -> Sampler:
        scheduler = self.components.scheduler
        pull = request.pull if isinstance(request, OneStepRequest) else 0.0
        return OneStepSampler(
            scheduler.alphas_cumprod, scheduler.config.prediction_type, self.facts.timestep, self.device, pull
        )

    def initial_latents(
        self, image: np.ndarray, request: Request, sampler: Sampler, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        latents = self.encode_image(image, request, generator if self.facts.sample_posterior else None, dtype)
        return sampler.initial_latents(latents, latents)

    def conditioned_model(self, request: Request) -> ConditionedModel:
        return self.model.conditioned_model()
