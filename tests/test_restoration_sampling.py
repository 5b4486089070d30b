"""SUPIR's restoration-guided EDM step and schedules against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from studio.engines.diffusion import restoration_sampling as rs


def test_sigma_schedule_is_supirs() -> None:
    table = rs.training_sigmas()
    assert table.shape == (1000,)
    assert rs.sigma_max() == pytest.approx(14.6146, abs=1e-4)
    assert float(table[0]) == pytest.approx(math.sqrt(0.00085 / (1 - 0.00085)), rel=1e-5)
    sigmas = rs.supir_sigmas(4)
    # int(linspace(999, 0, 4, endpoint=False)) = 999, 749, 499, 249; highest first, then 0
    expected = [float(table[t]) for t in (999, 749, 499, 249)] + [0.0]
    assert sigmas.tolist() == pytest.approx(expected, rel=1e-6)


def test_linear_schedules_hit_start_and_end() -> None:
    top = rs.sigma_max()
    assert rs.linear_schedule(4.0, 7.5, top, top) == pytest.approx(4.0)
    assert rs.linear_schedule(4.0, 7.5, 0.0, top) == pytest.approx(7.5)
    assert rs.linear_schedule(4.0, 7.5, top / 2, top) == pytest.approx(5.75)
    assert rs.linear_schedule(0.5, 1.0, top / 4, top) == pytest.approx(0.875)


def test_churn_gamma_is_capped_and_windowed() -> None:
    assert rs.churn_gamma(5, 50, 3.0) == pytest.approx(0.1)
    assert rs.churn_gamma(40, 10, 3.0) == pytest.approx(2**0.5 - 1)
    assert rs.churn_gamma(5, 50, 3.0, s_tmin=4.0) == 0.0


def test_restoration_guided_step_matches_hand_computation() -> None:
    x = torch.tensor([[[[1.0, -2.0]]]])
    z1 = torch.tensor([[[[0.5, 0.25]]]])
    noise = torch.tensor([[[[0.3, -0.1]]]])
    d_model = torch.tensor([[[[0.2, -0.4]]]])
    sigma, sigma_next, tau, gamma, s_noise, top = 2.0, 1.0, 2.0, 0.1, 1.003, 14.6146
    hook = rs.restoration_guidance(z1, tau, top)
    seen = []

    def denoise(xi: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        seen.append((xi.clone(), float(s)))
        return d_model

    out = rs.euler_churn_step(x, torch.tensor(sigma), torch.tensor(sigma_next), denoise, gamma, s_noise, noise, hook)
    sigma_hat = 2.2
    x_hat = [1.0 + 0.3 * 1.003 * math.sqrt(2.2**2 - 4), -2.0 - 0.1 * 1.003 * math.sqrt(2.2**2 - 4)]
    w = (2.0 / 14.6146) ** 2
    d = [0.2 - (0.2 - 0.5) * w, -0.4 - (-0.4 - 0.25) * w]
    expected = [xh + (xh - di) / sigma_hat * (sigma_next - sigma_hat) for xh, di in zip(x_hat, d)]
    assert seen[0][1] == pytest.approx(sigma_hat)
    assert seen[0][0].flatten().tolist() == pytest.approx(x_hat, rel=1e-6)
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_guidance_stops_at_low_noise_and_when_off() -> None:
    z1 = torch.zeros(1, 1, 1, 1)
    d = torch.ones(1, 1, 1, 1)
    assert float(rs.restoration_guidance(z1, 1.0, 10.0)(d, torch.tensor(5.0), torch.tensor(0.04))) == 1.0
    assert float(rs.restoration_guidance(z1, -1.0, 10.0)(d, torch.tensor(5.0), torch.tensor(4.0))) == 1.0
    assert float(rs.restoration_guidance(z1, 0.0, 10.0)(d, torch.tensor(5.0), torch.tensor(4.0))) == 0.0
    assert float(rs.restoration_guidance(z1, 1.0, 10.0)(d, torch.tensor(5.0), torch.tensor(4.0))) == pytest.approx(0.5)


def test_eps_denoiser_uses_nearest_training_sigma() -> None:
    table = rs.training_sigmas()
    calls = []

    def eps_model(x_in: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append((x_in.clone(), int(t)))
        return torch.full_like(x_in, 0.5)

    denoise = rs.EpsToX0(eps_model)
    x = torch.full((1, 1, 1, 1), 3.0)
    out = denoise(x, torch.tensor(float(table[500]) * 1.001))
    s = float(table[500])
    assert calls[0][1] == 500
    assert float(calls[0][0]) == pytest.approx(3.0 / math.sqrt(s * s + 1), rel=1e-6)
    assert float(out) == pytest.approx(3.0 - 0.5 * s, rel=1e-6)


def test_sampler_draws_churn_noise_from_the_generator() -> None:
    sigmas = rs.supir_sigmas(3)
    x = torch.ones(1, 2, 2, 2)

    def run(seed: int) -> torch.Tensor:
        return rs.sample_euler_churn(lambda xi, s: xi * 0.5, x, sigmas, churn=3.0, s_noise=1.0,
                                     generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
