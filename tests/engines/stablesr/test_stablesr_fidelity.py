"""--fidelity on the stablesr engine, measured: PSNR against the stage-1 image never falls as fidelity rises,
and fidelity 1 is at least 3 dB above fidelity 0, on a real photo crop. The VAE is the tiny one trained on
real photos (a random VAE's round trip is noise); UNet and StableSR adapter are toy-size random, so the
steering comes from the mapping (pull, denoise), not from learned restoration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import itertools

from support.stablesr_tiny import write_base, write_official_files

from studio.engines.stablesr.engine import StableSREngine
from studio.ops.metrics import psnr
from studio.ops.resize import resize
from studio.settings import Settings, apply_layer


def test_psnr_to_stage1_rises_with_fidelity(tiny_photo_vae_path: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    from diffusers import AutoencoderKL

    base = write_base(tmp_path / "base", vae=AutoencoderKL.from_pretrained(tiny_photo_vae_path))
    adapter, _ = write_official_files(tmp_path / "official")
    crop = astronaut[40:168, 160:288].astype(np.float32) / 255.0  # the face, 128 px
    low = resize(crop, 32, 32, "area")
    stage1 = resize(low, 64, 64, "lanczos")
    scores = []
    for fidelity in (0.0, 0.25, 0.5, 0.75, 1.0):
        settings = apply_layer(
            Settings(),
            {
                "engine": "stablesr",
                "model": str(base),
                "adapter": str(adapter),
                "stage1": "lanczos",
                "steps": 4,
                "guidance": 1.0,
                "seed": 5,
                "tile": 0,
                "fidelity": fidelity,
            },
            "cli",
        )
        out = StableSREngine(settings).restore(low, 2.0).image
        scores.append(psnr(out, stage1))
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(scores)), scores
    assert scores[-1] - scores[0] >= 3.0, scores
