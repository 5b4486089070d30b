"""Degradation profiles: determinism, drawn parameters inside the published ranges, measured statistics, CLI layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app
from studio.lab import degradation_profiles as profiles
from studio.lab.degrade import degrade_image
from studio.ops.degradations import add_gaussian_noise, gaussian_kernel, plateau_kernel, sinc_kernel


@pytest.fixture(scope="module")
def clean(astronaut: np.ndarray) -> np.ndarray:
    return astronaut[96:224, 160:288].astype(np.float32) / 255.0  # 128x128, the face


@pytest.mark.parametrize("profile", sorted(profiles.PROFILES))
def test_profiles_are_deterministic_per_seed_and_name(clean: np.ndarray, profile: str) -> None:
    _, first, steps = degrade_image(clean, profile, 4, 7, "a")
    _, again, steps_again = degrade_image(clean, profile, 4, 7, "a")
    _, other_seed, _ = degrade_image(clean, profile, 4, 8, "a")
    _, other_name, _ = degrade_image(clean, profile, 4, 7, "b")
    assert first.shape == (32, 32, 3) and first.dtype == np.float32
    assert np.array_equal(first, again) and steps == steps_again
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_name)
    assert 0.0 <= first.min() and first.max() <= 1.0
    json.dumps(steps)  # every drawn value is JSON-ready


def test_crop_makes_sides_divide_by_the_scale(clean: np.ndarray) -> None:
    hq, lq, _ = degrade_image(clean[:127, :126], "jpeg", 4, 0, "x")
    assert hq.shape[:2] == (124, 124) and lq.shape[:2] == (31, 31)


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def test_realesrgan_draws_stay_in_the_published_ranges(clean: np.ndarray) -> None:
    small = clean[::2, ::2]
    seen_kernels, seen_noise = set(), set()
    for seed in range(40):
        _, lq, steps = degrade_image(small, "realesrgan", 2, seed, "p")
        assert lq.shape == (32, 32, 3)
        order = profiles.FIRST_ORDER
        for step in steps:
            if step["op"] == "jpeg":
                assert 30 <= step["quality"] <= 95
            elif step["op"] == "blur":
                seen_kernels.add(step["kernel"])
                assert step["size"] in profiles.KERNEL_SIZES
                if step["kernel"] == "sinc":
                    assert _in(step["cutoff"], (math.pi / 5, math.pi))
                else:
                    assert _in(step["sigma_x"], (0.2, 3.0)) and _in(step["sigma_y"], (0.2, 3.0))
                    assert _in(step["beta"], (0.5, 4.0))
            elif step["op"] == "gaussian_noise":
                seen_noise.add("gaussian")
                assert _in(step["sigma_255"], order["noise_range"])
            elif step["op"] == "poisson_noise":
                seen_noise.add("poisson")
                assert _in(step["scale"], order["poisson_scale_range"])
            elif step["op"] == "resize" and step["direction"] != "final":
                assert _in(step["factor"], (0.15, 1.5))
        ops = [step["op"] for step in steps]
        assert ops.count("jpeg") == 2 and ops.count("resize") == 3  # two rounds, then the final resize
    assert {"iso", "aniso"} <= seen_kernels and seen_noise == {"gaussian", "poisson"}


def test_second_round_uses_its_own_smaller_ranges() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        _, params = profiles.draw_kernel(rng, profiles.SECOND_ORDER)
        if params["kernel"] != "sinc":
            assert _in(params["sigma_x"], (0.2, 1.5)) and _in(params["sigma_y"], (0.2, 1.5))


def test_drawn_noise_level_matches_the_measured_noise() -> None:
    flat = np.full((256, 256, 3), 128 / 255, np.float32)
    checked = {"gaussian_noise": 0, "poisson_noise": 0}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        noisy, step = profiles.noise_step(flat, rng, profiles.FIRST_ORDER)
        noise = noisy - flat
        if step["op"] == "gaussian_noise":
            assert _in(step["sigma_255"], (1.0, 30.0))
            expected = step["sigma_255"] / 255.0
        else:
            assert _in(step["scale"], (0.05, 3.0))
            levels = 2  # one distinct value rounds up to 2 photon levels
            expected = step["scale"] * math.sqrt((128 / 255) * levels) / levels
        assert np.std(noise) == pytest.approx(expected, rel=0.05)
        if step["gray"]:
            assert np.allclose(noise[..., 0], noise[..., 1]) and np.allclose(noise[..., 1], noise[..., 2])
        checked[step["op"]] += 1
    assert all(checked.values())


def test_gaussian_noise_primitive_has_the_requested_sigma() -> None:
    flat = np.full((200, 200, 3), 0.5, np.float32)
    noisy = add_gaussian_noise(flat, 10 / 255, False, np.random.default_rng(1))
    assert np.std(noisy - flat) * 255 == pytest.approx(10, rel=0.02)


def test_kernels_have_the_requested_shape() -> None:
    kernel = gaussian_kernel(21, 2.0, 1.0, 0.0)
    axis = np.arange(21) - 10
    assert kernel.sum() == pytest.approx(1.0)
    assert (kernel.sum(axis=0) * axis**2).sum() == pytest.approx(4.0, rel=0.02)  # variance along x
    assert (kernel.sum(axis=1) * axis**2).sum() == pytest.approx(1.0, rel=0.02)
    rotated = gaussian_kernel(21, 2.0, 1.0, math.pi / 2)
    assert np.allclose(rotated, kernel.T, atol=1e-9)
    plateau = plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    same_sigma = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert plateau[10, 11] / plateau[10, 10] > same_sigma[10, 11] / same_sigma[10, 10]  # flatter top
    assert plateau[10, 0] / plateau[10, 10] > same_sigma[10, 0] / same_sigma[10, 10]  # and heavier tails
    sinc = sinc_kernel(21, math.pi / 2)
    assert sinc.sum() == pytest.approx(1.0) and sinc.min() < 0  # ringing lobes


def test_old_photo_fades_and_tones(clean: np.ndarray) -> None:
    _, lq, steps = degrade_image(clean, "old-photo", 2, 3, "p")
    fade = next(step for step in steps if step["op"] == "fade")
    assert 0.04 <= fade["black"] <= 0.18 and 0.82 <= fade["white"] <= 0.97
    assert any(step["op"] in ("sepia", "colour_cast") for step in steps)
    assert np.percentile(lq, 1) > 0.02  # blacks lifted: the print faded


def test_cli_writes_the_pairs_layout(tmp_path: Path, astronaut: np.ndarray) -> None:
    clean_dir = tmp_path / "clean"
    (clean_dir / "sub").mkdir(parents=True)
    Image.fromarray(astronaut[:130, :101]).save(clean_dir / "a.png")
    Image.fromarray(astronaut[200:300, 200:300]).save(clean_dir / "sub" / "b.jpg")
    (clean_dir / "broken.png").write_bytes(b"not an image")
    pairs = tmp_path / "pairs"
    runner = CliRunner()
    result = runner.invoke(
        app, ["degrade", str(clean_dir), "-o", str(pairs), "--profile", "scan", "--scale", "2", "--seed", "5"]
    )
    assert result.exit_code == 1, result.output  # the broken file fails alone
    assert "broken" in result.output
    hq = Image.open(pairs / "hq" / "a.png")
    lq = Image.open(pairs / "lq" / "a.png")
    assert hq.size == (100, 130) and lq.size == (50, 65)
    assert (pairs / "lq" / "sub" / "b.png").is_file()
    manifest = json.loads((pairs / "degradations.json").read_text())
    assert set(manifest["pairs"]) == {"a", "sub/b"} and "broken" in manifest["failed"]
    embedded = json.loads(lq.info["studio-degradation"])
    assert embedded == manifest["pairs"]["a"] and embedded["seed"] == 5
    again = runner.invoke(app, ["degrade", str(clean_dir), "-o", str(pairs)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = runner.invoke(app, ["degrade", str(clean_dir), "-o", str(tmp_path / "x"), "--profile", "oil"])
    assert bad.exit_code == 2 and "realesrgan" in bad.output
