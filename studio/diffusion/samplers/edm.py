"""k-diffusion-style sampling over an x0 denoiser (Karras et al. 2022, "Elucidating the Design Space...").

Pieces, each a plain function or a small callable, composed by the engine:
- `discrete_sigmas(alphas_cumprod)`: the noise level of each training timestep of a DDPM-trained model,
  sigma = sqrt((1 - alpha_bar) / alpha_bar) (the model's betas decide it).
- `sigma_schedule(discrete, steps)`: the sampling sigmas, descending, ending in 0 (sgm/SUPIR spacing).
- `X0Denoiser`: wraps an eps- or v-predicting denoiser `(x, t, window)` into `model(x, sigma) -> x0` with
  c_skip, c_out, c_in from sigma; the network gets the nearest training timestep.
- `sample_euler`: Euler steps with churn (s_churn, s_tmin, s_tmax, s_noise) and a `hook` that may
  rewrite the x0 estimate each step; `restoration_guidance` is SUPIR's such hook.
- `EDMSampler`: all of it as a `Sampler` for the recipe.

Latents here live in the variance-exploding space x = x0 + sigma * noise (k-diffusion's convention).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.diffusion.samplers.schedulers import start_index

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import Denoiser
    from studio.diffusion.latent_tiling import Window
    from studio.diffusion.samplers import StepCallback


@dataclass(frozen=True)
class EDMStep:
    """Where a step is: its index, the schedule's sigma, the churned sigma the model saw, the next sigma."""

    index: int
    sigma: float
    sigma_hat: float
    sigma_next: float


X0Hook = Callable[["torch.Tensor", "torch.Tensor", EDMStep], "torch.Tensor"]
"""hook(x0, x, step) -> x0: may replace the denoised estimate before the Euler step uses it."""


@dataclass(frozen=True)
class Churn:
    """Karras' stochastic churn: between s_tmin and s_tmax, raise sigma by gamma = min(s_churn / N,
    sqrt(2) - 1) adding fresh noise scaled by s_noise. s_churn = 0: deterministic Euler."""

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0


def discrete_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for every training timestep t, ascending."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def sigma_schedule(discrete: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` sigmas from the highest down (timesteps int(linspace(T-1, 0, steps, endpoint=False))), then 0."""
    import numpy as np
    import torch

    count = len(discrete)
    timesteps = np.linspace(count - 1, 0, steps, endpoint=False).astype(int)
    return torch.cat([discrete[torch.from_numpy(timesteps)], discrete.new_zeros(1)])


class X0Denoiser:
    """An eps- or v-prediction denoiser of (x, t, window) seen as `model(x, sigma, window) -> x0`.

    c_in = 1 / sqrt(sigma^2 + 1) scales the VE latent back to the unit variance the network was
    trained on; x0 = c_skip * x + c_out * prediction with, for epsilon, c_skip = 1, c_out = -sigma and,
    for v, c_skip = 1 / (sigma^2 + 1), c_out = -sigma / sqrt(sigma^2 + 1). The network gets the
    training timestep whose sigma is nearest (as sgm's discrete denoiser does).
    """

    def __init__(self, denoiser: Denoiser, discrete: torch.Tensor, prediction_type: str) -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type {prediction_type!r}: expected 'epsilon' or 'v_prediction'")
        self.denoiser = denoiser
        self.discrete = discrete
        self.prediction_type = prediction_type

    def timestep(self, sigma: float) -> torch.Tensor:
        return (self.discrete - sigma).abs().argmin()

    def __call__(self, x: torch.Tensor, sigma: float, window: Window | None = None) -> torch.Tensor:
        c_in = 1 / math.sqrt(sigma**2 + 1)
        prediction = self.denoiser(x * c_in, self.timestep(sigma).to(x.device), window)
        if self.prediction_type == "epsilon":
            return x - sigma * prediction
        return x / (sigma**2 + 1) - sigma * c_in * prediction


def sample_euler(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generator: torch.Generator,
    churn: Churn = Churn(),
    hook: X0Hook | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Euler (Karras et al. 2022, Algorithm 2 with the Euler step): x <- x + (x - x0) / sigma_hat * dt."""
    from diffusers.utils.torch_utils import randn_tensor

    values = [float(s) for s in sigmas]
    gamma_max = min(churn.s_churn / (len(values) - 1), math.sqrt(2) - 1)
    for index, (sigma, sigma_next) in enumerate(itertools.pairwise(values)):
        gamma = gamma_max if churn.s_tmin <= sigma <= churn.s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise * churn.s_noise * math.sqrt(sigma_hat**2 - sigma**2)
        denoised = model(x, sigma_hat)
        if hook is not None:
            denoised = hook(denoised, x, EDMStep(index, sigma, sigma_hat, sigma_next))
        x = x + (x - denoised) / sigma_hat * (sigma_next - sigma_hat)
        if on_step is not None:
            on_step(index, x)
    return x


def restoration_guidance(target: torch.Tensor, sigma_max: float, tau: float, min_next_sigma: float = 0.05) -> X0Hook:
    """SUPIR's restoration-guided sampling: pull x0 toward `target` (the degraded image's latent) by
    (sigma / sigma_max)^tau, strongly early and fading out; off once the next sigma is below `min_next_sigma`."""

    def hook(x0: torch.Tensor, x: torch.Tensor, step: EDMStep) -> torch.Tensor:
        if tau <= 0 or step.sigma_next <= min_next_sigma:
            return x0
        return x0 - (x0 - target) * (step.sigma / sigma_max) ** tau

    return hook


class EDMSampler:
    """The EDM Euler loop as a recipe `Sampler`, on the sigmas of a diffusers scheduler's betas.

    Pure noise starts at x = noise * sqrt(1 + sigma_max^2) (the VE image of unit-variance noise);
    img2img (strength < 1) starts at image_latents + noise * sigma at the first remaining step.
    """

    def __init__(
        self,
        scheduler: Any,
        steps: int,
        generator: torch.Generator,
        strength: float = 1.0,
        churn: Churn = Churn(),
        hook: X0Hook | None = None,
    ) -> None:
        self.discrete = discrete_sigmas(scheduler.alphas_cumprod.double()).float()
        self.sigmas = sigma_schedule(self.discrete, steps)[start_index(steps, strength) :]
        self.prediction_type = scheduler.config.prediction_type
        self.generator = generator
        self.churn = churn
        self.hook = hook

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def initial_latents(self, noise: torch.Tensor, image_latents: torch.Tensor | None = None) -> torch.Tensor:
        sigma = float(self.sigmas[0])
        if image_latents is None:
            return noise * math.sqrt(1 + sigma**2)
        return image_latents + noise * sigma

    def sample(self, denoiser: Denoiser, latents: torch.Tensor, on_step: StepCallback) -> torch.Tensor:
        model = X0Denoiser(denoiser, self.discrete.to(latents.device), self.prediction_type)
        return sample_euler(model, latents, self.sigmas, self.generator, self.churn, self.hook, on_step)
