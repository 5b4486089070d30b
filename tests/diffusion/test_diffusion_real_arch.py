"""The SD x4 pipeline on the REAL architecture (configs/sd-x4, random weights, no download):
one guided step on a 16x16 input proves the code against the real shapes (7-channel input, class
labels for the noise level, 1024-wide cross-attention, the 3-level VAE that upscales 4x)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.diffusion.offload import Placement
from studio.engines.sd_x4.pipeline import UpscalePipeline, UpscaleRequest
from studio.testing.tiny_sd import build_components, real_configs


@pytest.mark.slow
def test_real_sd_x4_architecture_runs_one_step_on_a_16px_input() -> None:
    configs = real_configs()
    components = build_components(configs["unet"], configs["vae"])
    assert sum(p.numel() for p in components.unet.parameters()) == 473_398_020  # the x4 upscaler's UNet
    assert components.size_multiple == 8 and components.vae.config.scaling_factor == 0.08333
    pipeline = UpscalePipeline(components, Placement("none", torch.device("cpu")), torch.float32)
    request = UpscaleRequest(
        prompt="a photo",
        negative_prompt="",
        steps=1,
        guidance=4.0,
        noise_level=20,
        seed=0,
        scheduler=None,
        unet_tile=0,
        tile_overlap=0,
        vae_tile=0,
    )
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    out = pipeline(image, request)
    assert out.shape == (64, 64, 3) and np.isfinite(out).all()
    assert 0.0 <= out.min() and out.max() <= 1.0
