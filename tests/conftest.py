"""Shared fixtures: an isolated user environment, and real test images made from scikit-image's data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One weights folder for the whole run, so bundled models are converted once, not per test."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(autouse=True)
def isolated_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_weights_dir: Path) -> Iterator[None]:
    """No test reads the developer's own config, presets or weights."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("STUDIO_CONFIG", str(tmp_path / "xdg" / "studio" / "config.toml"))
    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mask = os.umask(0o022)  # `studio serve` sets 077 for its own process; run in-process it must not leak
    yield
    os.umask(mask)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's astronaut portrait (public domain), 512x512 RGB uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def photo(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """A small real photo on disk (64x48 JPEG)."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(astronaut).resize((64, 48), Image.Resampling.LANCZOS).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def restoreformer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RestoreFormer (32 channels, one block per level) saved to a file.

    Random weights: it tests the face pipeline's wiring (spandrel loading, value range, paste-back),
    not restoration quality, at a fraction of the real model's cost.
    """
    import torch
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    model = RestoreFormer(
        n_embed=64,
        embed_dim=32,
        ch=32,
        out_ch=3,
        ch_mult=(1, 1, 2, 2, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(16,),
        dropout=0.0,
        in_channels=3,
        resolution=512,
        z_channels=32,
        double_z=False,
        enable_mid=True,
        head_size=8,
    )
    path = tmp_path_factory.mktemp("faces") / "tiny-restoreformer.pth"
    torch.save({key: value.contiguous() for key, value in model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def tiny_sd_x4_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A diffusers SD x4 folder (model_index.json + components) with tiny random weights; do not modify."""
    from studio.testing.tiny_sd import (
        TINY_UNET_CONFIG,
        TINY_VAE_CONFIG,
        build_components,
        save_as_diffusers_folder,
    )

    folder = tmp_path_factory.mktemp("tiny-sd-x4")
    save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base folder, ControlNet folder) of tiny random SDXL components; do not modify."""
    from studio.testing import tiny_sdxl as random_sdxl

    root = tmp_path_factory.mktemp("tiny_sdxl")
    pipe = random_sdxl.build_base(random_sdxl.TINY_UNET_CONFIG)
    random_sdxl.save_base(pipe, root / "base")
    random_sdxl.build_controlnet(pipe.unet, pipe.vae_scale_factor).save_pretrained(root / "controlnet")
    return root / "base", root / "controlnet"


@pytest.fixture(scope="session")
def tiny_photo_vae_path() -> Path:
    """A tiny diffusers AutoencoderKL (SD's shape: 4 latent channels, 8x) trained briefly on real photo crops.

    Its round trip resembles the input (held-out PSNR in its README), unlike a random VAE's, so tests
    can measure fidelity, tiling and seams with it. Made by scripts/train_tiny_vae.py. Its
    scaling_factor gives unit-variance latents; SD and SDXL differ from it only in that number.
    """
    return Path(__file__).parent / "fixtures" / "tiny_photo_vae"
