"""The tiny photo VAE fixture: it loads through diffusers and its round trip resembles a photo it never saw."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


def test_round_trip_of_a_held_out_photo(tiny_photo_vae_path) -> None:
    from diffusers import AutoencoderKL
    from skimage import data

    vae = AutoencoderKL.from_pretrained(tiny_photo_vae_path).eval()
    assert vae.config.latent_channels == 4 and 2 ** (len(vae.config.block_out_channels) - 1) == 8
    photo = torch.from_numpy(data.chelsea()[:256, 64:320].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        latent = vae.encode(photo).latent_dist.mean
        decoded = vae.decode(latent).sample.clamp(-1, 1)
        noise = vae.decode(torch.randn_like(latent) / vae.config.scaling_factor).sample.clamp(-1, 1)
    psnr = 10 * math.log10(4 / float(((decoded - photo) ** 2).mean()))
    noise_psnr = 10 * math.log10(4 / float(((noise - photo) ** 2).mean()))
    assert latent.shape == (1, 4, 32, 32)
    assert psnr > 20 and psnr > noise_psnr + 5  # a random latent decodes to a smooth grey: ~15 dB
    assert 0.5 < float((latent * vae.config.scaling_factor).std()) < 2  # the scaling factor gives ~unit variance
