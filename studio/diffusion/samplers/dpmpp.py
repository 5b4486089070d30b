"""DPM-Solver++(2M) on Karras sigmas over an x0 denoiser, with the same x0 hook as the EDM Euler loop.

Lu et al. 2022 ("DPM-Solver++"), second-order multistep in log-sigma, as k-diffusion's sample_dpmpp_2m;
sigmas from Karras et al. 2022 (rho = 7) between the model's smallest and largest training sigma. For
few-step runs (10-20 steps) where Euler needs 50: the hook (e.g. SUPIR's restoration guidance) edits each
step's x0 before the update, exactly as in `edm.sample_euler`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from studio.diffusion.samplers.edm import EDMStep, X0Denoiser, X0Hook, discrete_sigmas

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import Denoiser
    from studio.diffusion.samplers import StepCallback


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """`steps` sigmas from sigma_max down to sigma_min spaced evenly in sigma^(1/rho), then 0."""
    import torch

    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(high + ramp * (low - high)) ** rho, torch.zeros(1, dtype=torch.float64)]).float()


def sample_dpmpp_2m(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    hook: X0Hook | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D', D' the x0 extrapolated from the last two steps."""
    values = [float(s) for s in sigmas]
    previous = None
    for index, (sigma, sigma_next) in enumerate(zip(values[:-1], values[1:])):
        denoised = model(x, sigma)
        if hook is not None:
            denoised = hook(denoised, x, EDMStep(index, sigma, sigma, sigma_next))
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            estimate = denoised
            if previous is not None:
                ratio = math.log(values[index - 1] / sigma) / h
                estimate = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
            x = (sigma_next / sigma) * x - math.expm1(-h) * estimate
        previous = denoised
        if on_step is not None:
            on_step(index, x)
    return x


class DPMSolverSampler:
    """DPM-Solver++(2M) Karras as a recipe `Sampler` on a diffusers scheduler's betas (pure noise start)."""

    def __init__(self, scheduler: Any, steps: int, hook: X0Hook | None = None) -> None:
        self.discrete = discrete_sigmas(scheduler.alphas_cumprod.double()).float()
        self.sigmas = karras_sigmas(float(self.discrete[0]), float(self.discrete[-1]), steps)
        self.prediction_type = scheduler.config.prediction_type
        self.hook = hook

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def initial_latents(self, noise: torch.Tensor, image_latents: torch.Tensor | None = None) -> torch.Tensor:
        return noise * math.sqrt(1 + float(self.sigmas[0]) ** 2)

    def sample(self, denoiser: Denoiser, latents: torch.Tensor, on_step: StepCallback) -> torch.Tensor:
        model = X0Denoiser(denoiser, self.discrete.to(latents.device), self.prediction_type)
        return sample_dpmpp_2m(model, latents, self.sigmas, self.hook, on_step)
