"""One-step x0 prediction (OSEDiff, S3Diff): the model runs once at a fixed timestep on the image's latent,
and the clean latent is read off its prediction.

    epsilon:  x0 = (z - sqrt(1 - abar_t) * eps) / sqrt(abar_t)
    v:        x0 = sqrt(abar_t) * z - sqrt(1 - abar_t) * v

This is what diffusers' DDPMScheduler.step returns with one inference step at t = 999 (its previous
sample is x0 there, plus noise of variance 1e-20); computing it directly avoids that call, which raises
on current diffusers for a one-step schedule (cswry/OSEDiff#60). Prediction blending across latent
windows happens before this step; since x0 is affine in the prediction, blending the predictions or
the x0 of each window gives the same result.

`pull` moves x0 a fraction toward the input latent itself (1: the input's own latent, decoded as is):
the fidelity lever of the onestep engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import Denoiser
    from studio.diffusion.samplers import StepCallback


def x0_from_prediction(
    prediction: torch.Tensor, latents: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The clean latent implied by an epsilon or v prediction at a timestep with cumulative alpha `alpha_bar`."""
    sa, sb = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return sa * latents - sb * prediction
    if prediction_type != "epsilon":
        raise ValueError(f"one-step x0: unsupported prediction type {prediction_type!r}")
    return (latents - sb * prediction) / sa


class OneStepSampler:
    """The `Sampler` of one-step methods: starts from the image's latent, runs the denoiser once."""

    def __init__(
        self,
        alphas_cumprod: torch.Tensor,
        prediction_type: str,
        timestep: int,
        device: torch.device,
        pull: float = 0.0,
    ) -> None:
        if not 0 <= pull <= 1:
            raise ValueError(f"pull {pull}: expected 0 to 1")
        self.alpha_bar = alphas_cumprod[timestep].float()
        self.prediction_type = prediction_type
        self.timestep = timestep
        self.device = device
        self.pull = pull

    @property
    def steps(self) -> int:
        return 1

    def initial_latents(self, noise: torch.Tensor, image_latents: torch.Tensor | None = None) -> torch.Tensor:
        """The image's latents, unchanged (a one-step method adds no noise)."""
        if image_latents is None:
            raise ValueError("one-step sampling starts from an image's latents")
        return image_latents

    def sample(self, denoiser: Denoiser, latents: torch.Tensor, on_step: StepCallback) -> torch.Tensor:
        import torch

        t = torch.tensor([self.timestep], device=self.device, dtype=torch.long)
        prediction = denoiser(latents, t, None)
        x0 = x0_from_prediction(
            prediction.float(), latents.float(), self.alpha_bar.to(latents.device), self.prediction_type
        )
        if self.pull:
            x0 = x0 + self.pull * (latents.float() - x0)
        x0 = x0.to(latents.dtype)
        on_step(0, x0)
        return x0
