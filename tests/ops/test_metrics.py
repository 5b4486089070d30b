"""PSNR, SSIM and delta E against values known in closed form or from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data

from studio.ops.metrics import masked_psnr, masked_ssim, mean_delta_e, psnr, ssim


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut().astype(np.float32) / 255.0


def test_identical_images(photo):
    assert psnr(photo, photo) == math.inf
    assert ssim(photo, photo) == pytest.approx(1.0)
    assert mean_delta_e(photo, photo) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_psnr_of_known_gaussian_noise(sigma):
    """Unclipped noise of std sigma on a mid-grey field gives PSNR = -20 log10(sigma)."""
    grey = np.full((256, 256, 3), 0.5, np.float32)
    noisy = grey + np.random.default_rng(0).normal(0.0, sigma, grey.shape).astype(np.float32)
    assert psnr(grey, noisy) == pytest.approx(-20 * math.log10(sigma), abs=0.05)


def test_psnr_of_a_constant_offset():
    photo = np.full((8, 8), 0.25)
    assert psnr(photo, photo + 0.1) == pytest.approx(20.0)


def test_ssim_falls_with_noise_and_is_channel_aware(photo):
    rng = np.random.default_rng(1)
    light = np.clip(photo + rng.normal(0, 0.02, photo.shape), 0, 1)
    heavy = np.clip(photo + rng.normal(0, 0.1, photo.shape), 0, 1)
    assert 1.0 > ssim(photo, light) > ssim(photo, heavy) > 0.0
    # Damage confined to one channel costs a third of what it costs when it hits all three.
    one_channel = photo.copy()
    one_channel[..., 0] = heavy[..., 0]
    loss_one = 1.0 - ssim(photo, one_channel)
    loss_all = 1.0 - ssim(photo, heavy)
    assert loss_one == pytest.approx(loss_all / 3, rel=0.1)


def test_ssim_on_a_constant_shift_matches_the_luminance_term():
    """For flat images SSIM reduces to its luminance term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)."""
    a, b = np.full((32, 32), 0.3), np.full((32, 32), 0.6)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.3 * 0.6 + c1) / (0.3**2 + 0.6**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-6)


def test_ssim_on_images_smaller_than_its_window(photo):
    small = photo[:6, :9]
    assert ssim(small, small) == pytest.approx(1.0)
    assert ssim(small, small * 0.5) < 1.0


def _grey_lightness(value: float) -> float:
    """CIE L* of an sRGB grey, from the sRGB transfer curve and the L* formula (Y > 0.008856)."""
    linear = value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    return 116.0 * linear ** (1 / 3) - 16.0


@pytest.mark.parametrize("low, high", [(0.46, 0.47), (0.2, 0.3), (0.7, 0.9)])
def test_delta_e_between_greys_follows_the_ciede2000_lightness_term(low, high):
    """Neutral greys differ only in L*, where CIEDE2000 is dL / S_L with
    S_L = 1 + 0.015 (Lm - 50)^2 / sqrt(20 + (Lm - 50)^2)."""
    l1, l2 = _grey_lightness(low), _grey_lightness(high)
    mean_l = (l1 + l2) / 2
    s_l = 1 + 0.015 * (mean_l - 50) ** 2 / math.sqrt(20 + (mean_l - 50) ** 2)
    expected = abs(l2 - l1) / s_l
    a, b = np.full((4, 4, 3), low), np.full((4, 4, 3), high)
    assert mean_delta_e(a, b) == pytest.approx(expected, rel=1e-3)


def test_delta_e_counts_a_colour_change_more_than_a_small_grey_step():
    grey = np.full((4, 4, 3), 0.5)
    tinted = grey + np.array([0.05, 0.0, -0.05])
    assert mean_delta_e(grey, tinted) > mean_delta_e(grey, grey + 0.01) * 3


def test_mismatched_inputs_are_rejected(photo):
    with pytest.raises(ValueError, match="one shape"):
        psnr(photo, photo[:10])
    with pytest.raises(ValueError, match="RGB"):
        mean_delta_e(photo[..., :1], photo[..., :1])
    with pytest.raises(ValueError, match="3x3"):
        ssim(photo[:2, :2], photo[:2, :2])


def test_masked_metrics_judge_only_their_region(photo):
    """Noise in the left half: the right half's region is untouched, the left half's is not."""
    noisy = photo.copy()
    noisy[:, :256] += np.random.default_rng(0).normal(0.0, 0.05, noisy[:, :256].shape).astype(np.float32)
    left = np.zeros(photo.shape[:2], np.float32)
    left[:, :200] = 1.0
    right = np.zeros_like(left)
    right[:, 320:] = 1.0
    assert masked_ssim(photo, noisy, right) == pytest.approx(1.0)
    assert masked_ssim(photo, noisy, left) < 0.8
    assert masked_psnr(photo, noisy, right) == math.inf
    assert masked_psnr(photo, noisy, left) == pytest.approx(-20 * math.log10(0.05), abs=0.3)
    with pytest.raises(ValueError, match="empty region"):
        masked_ssim(photo, noisy, np.zeros_like(left))


@pytest.mark.parametrize("shape", [(3, 3), (6, 9, 3), (11, 11), (64, 48, 3), (512, 512, 3)])
def test_ssim_agrees_with_skimage_gaussian_ssim(photo, shape):
    """skimage's figure (the paper's window) exactly in float64; in float32 (the quality report's) within
    1e-5 on the mean and 1e-4 per pixel."""
    from skimage.metrics import structural_similarity

    from studio.ops.metrics import ssim_map, ssim_of_map

    rng = np.random.default_rng(2)
    a = photo[: shape[0], : shape[1]] if len(shape) == 3 else photo[: shape[0], : shape[1], 1]
    b = np.clip(a + rng.normal(0.0, 0.08, a.shape), 0.0, 1.0)
    side = min(shape[:2])
    expected, full = structural_similarity(
        a.astype(np.float64),
        b,
        full=True,
        data_range=1.0,
        channel_axis=-1 if a.ndim == 3 else None,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        win_size=min(11, side if side % 2 else side - 1),
    )
    per_pixel = full.mean(axis=-1) if full.ndim == 3 else full
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert np.abs(ssim_map(a, b) - per_pixel).max() < 1e-9
    fast = ssim_map(a, b, np.float32)
    assert fast.dtype == np.float32
    assert ssim_of_map(fast) == pytest.approx(expected, abs=1e-5)
    assert np.abs(fast - per_pixel).max() < 1e-4
