"""The supir engine on tiny random SDXL components (UNet with text_time conditions, two CLIP encoders, VAE,
tile ControlNet), saved as diffusers folders and loaded through the engine's real loader.

Random weights test wiring, sizes, reproducibility and the sampler's arithmetic, not image quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.engines.supir.engine import SupirEngine
from studio.engines.supir.knobs import from_strength, working_size
from studio.engines.supir.recipe import linear_schedule, restoration_guidance
from studio.errors import UsageError
from studio.settings import resolve
from studio.testing import tiny_sdxl as random_sdxl


def make_engine(models: tuple[Path, Path], **flags: object) -> SupirEngine:
    cli = {
        "model": str(models[0]),
        "adapter": str(models[1]),
        "min_side": 0,
        "steps": 2,
        "seed": 3,
        "stage1": "lanczos",
        "prompt": "a photo",
        **flags,
    }
    return SupirEngine(resolve(cli))


@pytest.fixture(scope="module")
def small_image(astronaut: np.ndarray) -> np.ndarray:
    from studio.ops.resize import resize

    return resize(astronaut.astype(np.float32) / 255.0, 12, 10)


# ------------------------------------------------------------------------------------------ sampler pieces
def test_restoration_guided_euler_step_matches_hand_computation() -> None:
    """One churned Euler step with the x0 pulled toward z1, as SUPIR's RestoreEDMSampler computes it."""
    from diffusers.utils.torch_utils import randn_tensor

    from studio.diffusion.samplers.edm import Churn, sample_euler

    x = torch.tensor([[[[1.0, -2.0]]]])
    z1 = torch.tensor([[[[0.5, 0.25]]]])
    d_model = torch.tensor([[[[0.2, -0.4]]]])
    sigma, sigma_next, tau, churn, s_noise, top = 2.0, 1.0, 2.0, 0.1, 1.003, 14.6146
    out = sample_euler(
        lambda xi, s: d_model,
        x,
        torch.tensor([sigma, sigma_next]),
        torch.Generator().manual_seed(5),
        Churn(churn, s_noise=s_noise),
        restoration_guidance(z1, top, tau),
    )
    noise = randn_tensor(x.shape, generator=torch.Generator().manual_seed(5)).flatten().tolist()
    sigma_hat = sigma * (1 + churn)  # gamma = min(s_churn / steps, sqrt 2 - 1) with one step
    x_hat = [v + n * s_noise * math.sqrt(sigma_hat**2 - sigma**2) for v, n in zip([1.0, -2.0], noise)]
    weight = (sigma / top) ** tau
    d = [0.2 - (0.2 - 0.5) * weight, -0.4 - (-0.4 - 0.25) * weight]
    expected = [xh + (xh - di) / sigma_hat * (sigma_next - sigma_hat) for xh, di in zip(x_hat, d)]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_dpmpp_2m_karras_steps_exactly_onto_a_point_mass() -> None:
    """For a denoiser that always answers c, DPM-Solver++(2M) interpolates x toward c in closed form."""
    from studio.diffusion.samplers.dpmpp import karras_sigmas, sample_dpmpp_2m

    sigmas = karras_sigmas(0.03, 14.6146, 4)
    assert float(sigmas[0]) == pytest.approx(14.6146) and float(sigmas[-2]) == pytest.approx(0.03)
    assert float(sigmas[-1]) == 0.0
    c, x0 = torch.full((1, 1, 1, 1), 0.25), torch.full((1, 1, 1, 1), 3.0)
    seen = []
    out = sample_dpmpp_2m(lambda x, s: c, x0, sigmas, on_step=lambda i, x: seen.append(float(x)))
    ratio = float(sigmas[1] / sigmas[0])
    assert seen[0] == pytest.approx(ratio * 3.0 + (1 - ratio) * 0.25, rel=1e-5)
    assert float(out) == pytest.approx(0.25)


def test_guidance_hook_tau_zero_holds_negative_is_off_and_stops_at_low_noise() -> None:
    from studio.diffusion.samplers.edm import EDMStep

    z1, d = torch.zeros(1), torch.ones(1)
    assert float(restoration_guidance(z1, 10.0, 0.0)(d, d, EDMStep(0, 5.0, 5.0, 4.0))) == 0.0
    assert float(restoration_guidance(z1, 10.0, 1.0)(d, d, EDMStep(0, 5.0, 5.0, 4.0))) == pytest.approx(0.5)
    assert float(restoration_guidance(z1, 10.0, -1.0)(d, d, EDMStep(0, 5.0, 5.0, 4.0))) == 1.0
    assert float(restoration_guidance(z1, 10.0, 0.0)(d, d, EDMStep(0, 5.0, 5.0, 0.04))) == 1.0


def test_linear_schedules_give_the_configured_value_at_each_sigma() -> None:
    top = 14.6146
    assert linear_schedule(4.0, 7.5, top, top) == pytest.approx(4.0)
    assert linear_schedule(4.0, 7.5, 0.0, top) == pytest.approx(7.5)
    assert linear_schedule(4.0, 7.5, top / 2, top) == pytest.approx(5.75)
    assert linear_schedule(0.5, 1.0, top / 4, top) == pytest.approx(0.875)


def test_engine_schedules_follow_the_models_sigma(tiny_sdxl: tuple[Path, Path], small_image: np.ndarray) -> None:
    """CFG and control scale seen by the model at each step: start at sigma_max, final at sigma 0."""
    engine = make_engine(
        tiny_sdxl, guidance=7.5, cfg_start=4.0, adapter_scale=1.0, adapter_scale_start=0.5, steps=3, churn=0.0
    )
    request, recipe = engine.sample(small_image, 2.0).request, engine._load().recipe
    top = recipe.sigma_max
    assert top == pytest.approx(14.6146, abs=1e-3)
    for t in (999, 500, 0):
        sigma = recipe.sigma_of(torch.tensor(t))
        assert request.guidance(torch.tensor(t)) == pytest.approx(3.5 * -sigma / top + 7.5)
        assert request.control_scales[0](torch.tensor(t)) == pytest.approx(-0.5 * sigma / top + 1.0)


# ------------------------------------------------------------------------------------------ settings
def test_strength_mapping_ends_and_raw_flags_win(tiny_sdxl: tuple[Path, Path]) -> None:
    assert from_strength(0.0) == {"restore_tau": 0.0, "guidance": 4.0, "cfg_start": 1.0, "adapter_scale": 1.0}
    assert from_strength(1.0) == pytest.approx(
        {"restore_tau": -1.0, "guidance": 7.5, "cfg_start": 4.0, "adapter_scale": 0.9}
    )
    assert from_strength(0.5)["restore_tau"] == pytest.approx(2.0)
    resolved = make_engine(tiny_sdxl, strength=0.0, restore_tau=3.0).resolved()
    assert resolved.tau == 3.0 and resolved.sources["restore_tau"] == "cli"
    assert resolved.guidance == 4.0 and resolved.sources["guidance"] == "strength 0.0"


def test_working_size_short_side_and_multiples() -> None:
    assert working_size(100, 150, 1024) == (1024, 1536)
    h, w = working_size(333, 500, 1024)
    assert min(h, w) >= 1024 and h % 64 == 0 and w % 64 == 0
    assert working_size(2048, 3000, 1024) == (2048, 3008)
    assert working_size(30, 44, 0, 8) == (32, 48)


# ------------------------------------------------------------------------------------------ runs
def test_exact_output_size(tiny_sdxl: tuple[Path, Path], small_image: np.ndarray) -> None:
    engine = make_engine(tiny_sdxl, steps=1)
    for scale in (2.0, 4.0, 1.7):
        result = engine.restore(small_image, scale)
        out = result.image
        assert out.shape == (round(12 * scale), round(10 * scale), 3)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert result.color_reference.shape == out.shape


def test_seed_reproducibility(tiny_sdxl: tuple[Path, Path], small_image: np.ndarray) -> None:
    first = make_engine(tiny_sdxl, seed=11, steps=1).restore(small_image, 2.0).image
    again = make_engine(tiny_sdxl, seed=11, steps=1).restore(small_image, 2.0).image
    other = make_engine(tiny_sdxl, seed=12, steps=1).restore(small_image, 2.0).image
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


def test_tiled_matches_untiled(tiny_sdxl: tuple[Path, Path], astronaut: np.ndarray) -> None:
    """32 px tiles (16 latent, overlap 4) over a 20x16 latent stay close to one whole-latent pass."""
    from studio.ops.resize import resize

    image = resize(astronaut.astype(np.float32) / 255.0, 20, 16)
    whole = make_engine(tiny_sdxl, tile=0, restore_tau=1.0, steps=1).restore(image, 2.0).image
    tiled_engine = make_engine(tiny_sdxl, tile=32, tile_overlap=8, restore_tau=1.0, steps=1)
    tiled_run = tiled_engine.sample(image, 2.0)
    tiled = tiled_run.image
    assert (tiled_run.request.unet_tile, tiled_run.request.tile_overlap) == (16, 4)
    assert np.abs(whole - tiled).mean() < 0.02


def test_bfloat16_on_cpu_and_provenance(tiny_sdxl: tuple[Path, Path], small_image: np.ndarray) -> None:
    engine = make_engine(tiny_sdxl, dtype="bf16", strength=0.3, scheduler="dpm++-2m-karras")
    result = engine.restore(small_image, 2.0)
    out = result.image
    assert np.isfinite(out).all()
    info = result.provenance
    assert info["dtype"] == "bfloat16" and info["vae_dtype"] == "bfloat16"
    assert info["restore_tau"] == pytest.approx(from_strength(0.3)["restore_tau"])
    assert info["resolved_from"]["guidance"] == "strength 0.3"
    assert info["work_size"] == [24, 24] and info["scheduler"] == "dpm++-2m-karras" and info["seed"] == 3


def test_stage1_none_needs_the_output_size(tiny_sdxl: tuple[Path, Path], small_image: np.ndarray) -> None:
    with pytest.raises(UsageError, match="--stage1 none"):
        make_engine(tiny_sdxl, stage1="none").restore(small_image, 2.0)


def test_cli_restore_writes_the_image(tiny_sdxl: tuple[Path, Path], photo: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from studio.cli import app

    out = tmp_path / "out.png"
    args = [
        "restore",
        str(photo),
        "-o",
        str(out),
        "--engine",
        "supir",
        "--model",
        str(tiny_sdxl[0]),
        "--adapter",
        str(tiny_sdxl[1]),
        "--min-side",
        "0",
        "--steps",
        "1",
        "--scale",
        "0.5",
        "--seed",
        "1",
        "--stage1",
        "lanczos",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(out).size == (32, 24)
    bad = CliRunner().invoke(app, [*args[:-2], "--dtype", "fp8"])
    assert bad.exit_code != 0 and "--dtype" in bad.output and "Traceback" not in bad.output


# ------------------------------------------------------------------------------------------ strength
def test_strength_moves_monotonically_away_from_the_stage1_image(
    tiny_photo_vae_path: Path, astronaut: np.ndarray, tmp_path: Path
) -> None:
    """With a VAE trained on photo crops (a random VAE's round trip is noise), raising --strength never
    brings the output closer to the stage-1 image, and strength 0 is >= 3 dB closer than strength 1."""
    from diffusers import AutoencoderKL

    from studio.ops.metrics import psnr
    from studio.ops.resize import resize

    vae = AutoencoderKL.from_pretrained(tiny_photo_vae_path)
    pipe = random_sdxl.build_base(random_sdxl.TINY_UNET_CONFIG, vae=vae)
    random_sdxl.save_base(pipe, tmp_path / "base")
    random_sdxl.build_controlnet(pipe.unet, pipe.vae_scale_factor).save_pretrained(tmp_path / "controlnet")
    models = (tmp_path / "base", tmp_path / "controlnet")
    image = resize(astronaut[40:296, 140:396].astype(np.float32) / 255.0, 32, 32)
    stage1 = resize(image, 64, 64)
    scores = []
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = make_engine(models, strength=strength, steps=6, seed=4).restore(image, 2.0).image
        scores.append(psnr(out, stage1))
    assert all(later <= earlier + 1e-6 for earlier, later in zip(scores, scores[1:])), scores
    assert scores[0] - scores[-1] >= 3.0, scores


@pytest.mark.parametrize("side", [1024, 2048, 3072, 4096])
def test_automatic_tiles_stay_at_sdxl_native_size_within_the_work_target(side: int) -> None:
    """Windows never exceed SDXL's native 128 latent px however much memory is free (SDXL repeats structures
    beyond it; the old planner ran a 2048 px image whole on a 24 GB card), and with the native tile the UNet
    does at most 1.3x the no-overlap minimum (it was 1.266-1.36x with fitted 32-cell overlaps)."""
    from studio.diffusion.latent_tiling import unet_work
    from studio.engines.supir.knobs import NATIVE_TILE

    engine = SupirEngine(resolve({}))
    latent = side // 8
    for free_gb in (12, 24, 80):
        tile, overlap, _ = engine.tiles(latent, latent, 8, 2, free_gb << 30)
        if latent <= NATIVE_TILE:
            assert tile == 0
            continue
        assert tile == NATIVE_TILE and overlap == 16
        assert unet_work(latent, latent, tile, overlap) <= 1.3 * latent * latent
    tile, _, _ = engine.tiles(latent, latent, 8, 2, 1 << 29)  # short of memory (512 MB): smaller windows
    assert tile == (0 if latent <= 96 else 96)
