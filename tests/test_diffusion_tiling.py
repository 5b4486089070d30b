"""Latent tiling, guidance wrappers and the tiled VAE (tiny random VAE built in-process, no network)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import itertools

from studio.engines.diffusion import tiled_vae
from studio.engines.diffusion.latent_tiling import (
    gaussian_weights,
    tile_starts,
    tile_windows,
    tiled_denoiser,
)


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 32, 8), (64, 64, 8), (65, 32, 16), (33, 32, 0)])
def test_tile_starts_cover_with_at_least_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_gaussian_weights_peak_in_the_centre() -> None:
    weights = gaussian_weights(9, 15)[0, 0]
    assert weights.shape == (9, 15) and weights.min() > 0
    assert weights.argmax().item() == 4 * 15 + 7


def test_tiled_denoiser_equals_whole_for_a_local_model_with_spatial_conditioning() -> None:
    """A per-pixel model that reads its own crop of a conditioning map: tiling must be exact."""
    cond_map = torch.randn(1, 2, 40, 56)

    def denoiser(x, t, window=None):
        crop = cond_map if window is None else cond_map[..., window.slices[0], window.slices[1]]
        return x * crop[:, :1] + crop[:, 1:] * t

    x = torch.randn(1, 4, 40, 56)
    whole = denoiser(x, 0.5)
    tiled = tiled_denoiser(denoiser, 40, 56, 16, 6)
    assert len(tile_windows(40, 56, 16, 6)) > 4
    torch.testing.assert_close(tiled(x, 0.5, None), whole)


@pytest.fixture(scope="module")
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(16, 16, 32), down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
    ).eval()


def smooth_latent(size: int) -> torch.Tensor:
    """Spatially smooth latents with a busy corner, like an image's: tiles differ in statistics."""
    g = torch.Generator().manual_seed(0)
    latent = torch.nn.functional.interpolate(torch.randn(1, 4, 6, 6, generator=g), size=(size, size),
                                             mode="bilinear") * 3
    latent[..., : size // 3, : size // 3] += torch.randn(1, 4, size // 3, size // 3, generator=g) * 4
    return latent


def per_tile_decode(vae, latent, tile: int, pad: int) -> np.ndarray:
    """Naive tiling: each tile normalised by its own GroupNorm statistics."""
    size = latent.shape[-1]
    out = np.zeros((size * 4, size * 4, 3), np.float32)
    for win in tile_windows(size, size, tile, 0):
        ctx = tiled_vae._padded(win, pad, size, size)
        part = tiled_vae.to_image(vae.decode(latent[..., ctx.slices[0], ctx.slices[1]], return_dict=False)[0])
        top, left = (win.top - ctx.top) * 4, (win.left - ctx.left) * 4
        h, w = win.size[0] * 4, win.size[1] * 4
        out[win.top * 4 : win.top * 4 + h, win.left * 4 : win.left * 4 + w] = part[top : top + h, left : left + w]
    return out


def test_tiled_vae_with_shared_group_norms_is_closer_to_whole_than_per_tile_norms(tiny_vae) -> None:
    latent = smooth_latent(48)
    with torch.no_grad():
        whole = tiled_vae.decode(tiny_vae, latent, 0)
        shared = tiled_vae.decode(tiny_vae, latent, 16, 8)
        naive = per_tile_decode(tiny_vae, latent, 16, 8)
    assert shared.shape == whole.shape == (192, 192, 3)
    shared_err, naive_err = np.abs(shared - whole).mean(), np.abs(naive - whole).mean()
    assert shared_err < 0.8 * naive_err
    # tone: the mean colour of each 64 px block follows the whole decode better with shared statistics
    assert np.abs(tone(shared) - tone(whole)).mean() < np.abs(tone(naive) - tone(whole)).mean()


def tone(image: np.ndarray) -> np.ndarray:
    return image.reshape(3, 64, 3, 64, 3).mean(axis=(1, 3))


def test_pooled_statistics_of_one_whole_tile_equal_the_untiled_ones(tiny_vae) -> None:
    """Pooling sums over tiles is exact: with one tile covering everything, frozen decode == plain decode."""
    latent = smooth_latent(24)
    with torch.no_grad():
        stats = tiled_vae.group_norm_stats(tiny_vae, latent, tile_windows(24, 24, 24, 0))
        with tiled_vae.frozen_group_norms(tiny_vae.decoder, stats):
            frozen = tiled_vae.to_image(tiny_vae.decode(latent, return_dict=False)[0])
        plain = tiled_vae.decode(tiny_vae, latent, 0)
    np.testing.assert_allclose(frozen, plain, atol=1e-4)
    assert not any("forward" in vars(m) for m in tiny_vae.decoder.modules())  # patches removed


def test_statistics_sample_spreads_over_rows_and_columns() -> None:
    windows = tile_windows(2048, 2048, 64, 0)
    tops = tiled_vae._spread(sorted({w.top for w in windows}), 4)
    assert len(tops) == 4 and min(tops) == 0 and max(tops) == 1984
