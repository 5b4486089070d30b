"""--fidelity on the onestep engine, measured: PSNR against the stage-1 image never falls as fidelity rises,
and fidelity 1 is at least 3 dB above fidelity 0, on a real photo crop. The VAE is the tiny one trained on
real photos (a random VAE's round trip is noise); UNet and OSEDiff LoRA are toy-size random, so the steering
comes from the mapping (the pull of x0 toward the stage-1 latent), not from learned restoration."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from support.onestep_tiny import write_osediff

from studio.engines.onestep.engine import OneStepEngine
from studio.ops.metrics import psnr
from studio.ops.resize import resize
from studio.settings import Settings, apply_layer

FIDELITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def psnr_by_fidelity(base: Path, adapter: Path, low: np.ndarray, key: str = "fidelity") -> list[float]:
    """PSNR of the 2x result against the bicubic stage-1 image, for each fidelity (or strength = 1 - it)."""
    stage1 = resize(low, low.shape[0] * 2, low.shape[1] * 2, "bicubic")
    settings = Settings()
    engine = OneStepEngine(
        apply_layer(
            settings, {"engine": "onestep", "model": str(base), "adapter": str(adapter), "seed": 5, "tile": 0}, "cli"
        )
    )
    scores = []
    for fidelity in FIDELITIES:
        value = fidelity if key == "fidelity" else 1.0 - fidelity
        engine.settings = apply_layer(engine.settings, {key: value}, "cli")
        scores.append(psnr(engine.restore(low, 2.0).image, stage1))
    return scores


@pytest.mark.slow
def test_psnr_to_stage1_rises_with_fidelity_and_falls_with_strength(
    tiny_photo_vae_path: Path, tmp_path: Path, astronaut: np.ndarray
) -> None:
    from diffusers import AutoencoderKL

    base, adapter = write_osediff(tmp_path, vae=AutoencoderKL.from_pretrained(tiny_photo_vae_path))
    crop = astronaut[40:168, 160:288].astype(np.float32) / 255.0  # the face, 128 px
    low = resize(crop, 32, 32, "area")
    for key in ("fidelity", "strength"):
        scores = psnr_by_fidelity(base, adapter, low, key)
        print(key, [round(s, 2) for s in scores])
        assert all(b >= a - 1e-6 for a, b in itertools.pairwise(scores)), scores
        assert scores[-1] - scores[0] >= 3.0, scores
