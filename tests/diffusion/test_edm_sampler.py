"""The EDM sampling pieces against hand-computed values (plain tensors and a diffusers scheduler config)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.diffusion.samplers.edm import (
    Churn,
    EDMSampler,
    EDMStep,
    X0Denoiser,
    discrete_sigmas,
    restoration_guidance,
    sample_euler,
    sigma_schedule,
)


def sd_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def test_sigmas_come_from_the_betas_and_reach_sdxl_sigma_max() -> None:
    scheduler = sd_scheduler()
    discrete = discrete_sigmas(scheduler.alphas_cumprod.double())
    torch.testing.assert_close(discrete.float().flip(0), scheduler.sigmas[:-1])  # diffusers' own sigmas
    sigmas = sigma_schedule(discrete, 4)
    assert len(sigmas) == 5 and sigmas[-1] == 0 and bool((sigmas[:-1].diff() < 0).all())
    assert sigmas[0].item() == pytest.approx(14.6146, abs=1e-3)  # SUPIR's sigma_max for SDXL's betas
    torch.testing.assert_close(sigmas[1], discrete[749])  # int(linspace(999, 0, 4, endpoint=False))[1]


def test_one_euler_step_with_churn_equals_the_hand_computed_value() -> None:
    """x0 = 0.5 x; sigmas (2, 1, 0), s_churn 0.5 over N = 2 steps: gamma = 0.25, sigma_hat = 2.5,
    x += eps * s_noise * sqrt(2.5^2 - 2^2) = 1.5 s_noise eps; then x += (x - 0.5 x) / 2.5 * (1 - 2.5) = -0.3 x."""
    x = torch.full((1, 1, 1, 2), 1.0)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    seen: list[float] = []

    def model(x, sigma):
        seen.append(sigma)
        return 0.5 * x

    steps: list[torch.Tensor] = []
    churn = Churn(s_churn=0.5, s_noise=1.003)
    sample_euler(
        model,
        x,
        torch.tensor([2.0, 1.0, 0.0]),
        torch.Generator().manual_seed(3),
        churn,
        on_step=lambda i, latents: steps.append(latents),
    )
    expected = 0.7 * (1.0 + 1.5 * 1.003 * eps)
    torch.testing.assert_close(steps[0], expected)
    assert seen[0] == pytest.approx(2.5)


def test_churn_only_between_s_tmin_and_s_tmax() -> None:
    x = torch.ones(1, 1, 1, 1)
    out = sample_euler(
        lambda x, s: 0.5 * x,
        x,
        torch.tensor([2.0, 1.0]),
        torch.Generator().manual_seed(0),
        Churn(s_churn=10.0, s_tmax=1.5),
    )
    torch.testing.assert_close(out, torch.full_like(x, 0.75))  # plain Euler: 1 + (1 - 0.5) / 2 * (1 - 2)


def test_x0_wrappers_recover_x0_from_exact_eps_and_v_predictions() -> None:
    """Feed each wrapper the true prediction for a known x0 and noise: it must return that x0."""
    scheduler = sd_scheduler()
    discrete = discrete_sigmas(scheduler.alphas_cumprod.double()).float()
    x0, noise = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    sigma = float(discrete[600])
    a, b = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)  # VP: x_t = a x0 + b noise
    inputs: list[torch.Tensor] = []

    def eps_model(x, t, window):
        inputs.append(x)
        assert int(t) == 600
        return noise

    torch.testing.assert_close(X0Denoiser(eps_model, discrete, "epsilon")(x0 + sigma * noise, sigma), x0)
    torch.testing.assert_close(inputs[0], a * x0 + b * noise)  # c_in brought x back to the VP sample

    def v_model(x, t, window):
        return a * noise - b * x0

    torch.testing.assert_close(X0Denoiser(v_model, discrete, "v_prediction")(x0 + sigma * noise, sigma), x0)
    with pytest.raises(ValueError, match="prediction type"):
        X0Denoiser(eps_model, discrete, "sample")


def test_restoration_guidance_pulls_x0_toward_the_target_by_sigma_ratio_power_tau() -> None:
    target, x0 = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    hook = restoration_guidance(target, sigma_max=10.0, tau=2.0)
    out = hook(x0, x0, EDMStep(index=0, sigma=5.0, sigma_hat=5.0, sigma_next=1.0))
    torch.testing.assert_close(out, torch.full_like(x0, 1 - 0.25))  # 1 - (1 - 0) * (5 / 10)^2
    assert hook(x0, x0, EDMStep(3, 0.1, 0.1, 0.0)) is x0  # off near the end
    assert restoration_guidance(target, 10.0, tau=-1)(x0, x0, EDMStep(0, 5.0, 5.0, 1.0)) is x0


def test_edm_sampler_starts_from_noise_or_a_noised_image_and_runs_its_steps() -> None:
    scheduler = sd_scheduler()
    generator = torch.Generator().manual_seed(0)
    full = EDMSampler(scheduler, 10, generator)
    noise, image = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    sigma_max = float(full.sigmas[0])
    assert full.steps == 10
    torch.testing.assert_close(full.initial_latents(noise), noise * math.sqrt(1 + sigma_max**2))
    half = EDMSampler(scheduler, 10, generator, strength=0.3)
    assert half.steps == 3
    torch.testing.assert_close(half.initial_latents(noise, image), image + noise * float(half.sigmas[0]))
    calls: list[int] = []
    x0 = torch.full((1, 1, 1, 1), 0.25)
    out = half.sample(lambda x, t, window: torch.zeros_like(x), image, lambda i, latents: calls.append(i))
    assert calls == [0, 1, 2]
    assert out.shape == image.shape and float(out) == pytest.approx(2.0)  # eps = 0: x0 is x, Euler keeps it
    pulled = EDMSampler(scheduler, 10, generator, strength=0.3, hook=restoration_guidance(x0, sigma_max, 1.0))
    guided_out = float(pulled.sample(lambda x, t, w: torch.zeros_like(x), image, lambda i, latents: None))
    assert 0.25 < guided_out < 1.99  # moved from the image's 2.0 toward the target 0.25
