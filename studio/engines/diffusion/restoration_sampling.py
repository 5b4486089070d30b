"""SUPIR's restoration-guided EDM sampling as small pure functions (k-diffusion style).

Yu et al. 2024 ("Scaling Up to Excellence", SUPIR) sample SDXL with Euler steps in sigma (Karras et
al. 2022, EDM) with churn, and pull each step's clean estimate D toward the stage-1 latent z1:
D <- D - (D - z1) * (sigma / sigma_max)^tau while sigma_next > 0.05 (restoration guidance). High noise
follows the input, low noise is free to add detail; tau < 0 turns the pull off. CFG and the control
scale may run linearly in sigma from a start value (at sigma_max) to the final value (at sigma 0).
The sigma schedule and the nearest-timestep denoiser are SUPIR's (sgm LegacyDDPMDiscretization,
DiscreteDenoiser with EpsScaling), so a run matches the reference step for step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

X0Denoiser = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""denoise(x, sigma) -> D, the model's estimate of the clean latent (sigma: a 0-d tensor)."""
X0Hook = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""hook(D, sigma, sigma_next) -> D: changes the clean estimate before the Euler step."""
StepCallback = Callable[[int, int], None]

BETA_START = 0.00085
BETA_END = 0.012
TRAIN_STEPS = 1000
GUIDANCE_SIGMA_MIN = 0.05  # SUPIR stops pulling toward z1 once sigma_next is this small


def training_sigmas(beta_start: float = BETA_START, beta_end: float = BETA_END,
                    train_steps: int = TRAIN_STEPS) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1 of SDXL's scaled-linear betas (ascending)."""
    import numpy as np
    import torch

    betas = np.linspace(beta_start**0.5, beta_end**0.5, train_steps, dtype=np.float64) ** 2
    abar = np.cumprod(1.0 - betas)
    return torch.tensor((1 - abar) / abar, dtype=torch.float32) ** 0.5


def sigma_max() -> float:
    """The largest training sigma (14.6146 for SDXL): the sigma where schedules reach their start value."""
    return float(training_sigmas()[-1])


def supir_sigmas(steps: int) -> torch.Tensor:
    """steps + 1 descending sigmas: the training sigmas at int(linspace(999, 0, steps, endpoint=False)),
    highest first, then 0 (SUPIR's LegacyDDPMDiscretization)."""
    import numpy as np
    import torch

    table = training_sigmas()
    if steps >= TRAIN_STEPS:
        chosen = table
    else:
        timesteps = np.linspace(TRAIN_STEPS - 1, 0, steps, endpoint=False).astype(int)[::-1].copy()
        chosen = table[torch.from_numpy(timesteps)]
    return torch.cat([chosen.flip(0), chosen.new_zeros(1)])


def linear_schedule(start: float, end: float, sigma: float, top: float) -> float:
    """start at sigma = top, end at sigma = 0, linear in between (SUPIR's linear CFG and control scale)."""
    return (start - end) * sigma / top + end


def churn_gamma(churn: float, steps: int, sigma: float, s_tmin: float = 0.0, s_tmax: float = math.inf) -> float:
    """EDM's churn: the fraction by which sigma is raised before a step, min(churn / steps, sqrt 2 - 1)."""
    return min(churn / steps, 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0


def restoration_guidance(target: torch.Tensor, tau: float, top: float,
                         sigma_min: float = GUIDANCE_SIGMA_MIN) -> X0Hook:
    """The x0 hook D <- D - (D - target) * (sigma / top)^tau, applied while sigma_next > sigma_min; tau < 0: off.

    SUPIR applies it per tile before blending; it is linear in D, so applying it once to the blended D
    (as here, on the whole latent) gives the same result.
    """

    def hook(denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if tau < 0 or float(sigma_next) <= sigma_min:
            return denoised
        weight = (float(sigma) / top) ** tau
        return denoised - (denoised - target.to(denoised.dtype)) * weight

    return hook


def euler_churn_step(x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, denoise: X0Denoiser,
                     gamma: float, s_noise: float, noise: torch.Tensor | None,
                     hook: X0Hook | None = None) -> torch.Tensor:
    """One EDM Euler step with churn: raise sigma to sigma_hat = sigma (1 + gamma) by adding
    s_noise * noise * sqrt(sigma_hat^2 - sigma^2), denoise at sigma_hat, let `hook` edit D (it sees the
    un-churned sigma, as SUPIR's guidance does), then step along (x - D) / sigma_hat to sigma_next."""
    sigma_hat = sigma * (1.0 + gamma)
    if gamma > 0 and noise is not None:
        x = x + noise * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
    denoised = denoise(x, sigma_hat)
    if hook is not None:
        denoised = hook(denoised, sigma, sigma_next)
    return x + (x - denoised) / sigma_hat * (sigma_next - sigma_hat)


def sample_euler_churn(denoise: X0Denoiser, x: torch.Tensor, sigmas: torch.Tensor, churn: float = 0.0,
                       s_noise: float = 1.0, hook: X0Hook | None = None,
                       generator: torch.Generator | None = None,
                       callback: StepCallback | None = None) -> torch.Tensor:
    """Run `euler_churn_step` over `sigmas` from x (already at sigma_0); churn noise drawn from `generator`.

    The churn noise of each step is drawn for the whole latent in one call, so tiling the denoiser
    never changes the random draws.
    """
    import torch

    steps = len(sigmas) - 1
    for i in range(steps):
        gamma = churn_gamma(churn, steps, float(sigmas[i]))
        noise = None
        if gamma > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)
        x = euler_churn_step(x, sigmas[i], sigmas[i + 1], denoise, gamma, s_noise, noise, hook)
        if callback is not None:
            callback(i + 1, steps)
    return x


class EpsToX0:
    """An epsilon-predicting model as an EDM denoiser: D = x - sigma_q * eps(x / sqrt(sigma_q^2 + 1), t),
    with sigma_q the nearest training sigma and t its index (SUPIR's DiscreteDenoiser + EpsScaling)."""

    def __init__(self, eps_model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                 sigmas: torch.Tensor | None = None) -> None:
        """`eps_model(x_in, timestep, sigma)` returns the noise estimate; sigma is passed for schedules."""
        self.eps_model = eps_model
        self.sigmas = training_sigmas() if sigmas is None else sigmas

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return (self.sigmas - float(sigma)).abs().argmin()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.timestep(sigma)
        sigma_q = float(self.sigmas[t])
        eps = self.eps_model(x / (sigma_q**2 + 1) ** 0.5, t, sigma)
        return x - eps.to(x.dtype) * sigma_q
