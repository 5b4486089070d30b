"""SwinIR task models: loading each official configuration, padding/cropping, model choice by measurement.

Networks are tiny and random (tests/support/swinir_fixtures.py) and go through studio's real loader (spandrel);
JPEG files are real ones written by Pillow (libjpeg), whose quantisation tables studio reads back.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import REPO
from support.swinir_fixtures import TASK_CONFIGS, save_swinir

from studio import weights
from studio.engines.base import RestoreContext
from studio.engines.fast.backends import load_spandrel
from studio.engines.fast.engine import FastEngine
from studio.engines.fast.swinir_tasks import choose_task_model, noise_sigma, task_models
from studio.io import jpeg_quality, read_image
from studio.settings import Settings

EXPECTED = {  # config: (scale, channels, window)
    "classical_sr_x2": (2, 3, 8),
    "classical_sr_x3": (3, 3, 8),
    "classical_sr_x8": (8, 3, 8),
    "lightweight_sr_x4": (4, 3, 8),
    "real_sr_x4": (4, 3, 8),
    "color_jpeg_car": (1, 3, 7),
    "jpeg_car": (1, 1, 7),
    "color_dn": (1, 3, 8),
    "gray_dn": (1, 1, 8),
}


@pytest.mark.parametrize("config", sorted(TASK_CONFIGS))
def test_each_task_configuration_is_detected_with_its_scale_and_channels(tmp_path: Path, config: str) -> None:
    descriptor = load_spandrel(save_swinir(tmp_path / f"{config}.pth", config))
    scale, channels, window = EXPECTED[config]
    assert descriptor.architecture.id == "SwinIR"
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, channels, channels)
    assert descriptor.model.window_size == window
    assert descriptor.model.img_range == (255.0 if window == 7 else 1.0)  # the JPEG models' range
    assert descriptor.purpose == ("Restoration" if scale == 1 else "SR")
    x = torch.rand(1, channels, 20, 20)
    assert descriptor(x).shape == (1, channels, 20 * scale, 20 * scale)


@pytest.mark.parametrize("config", ["color_jpeg_car", "color_dn", "classical_sr_x2"])
def test_odd_sizes_are_reflect_padded_to_the_window_and_cropped_back(tmp_path: Path, config: str) -> None:
    """The loader's result equals the network run on a reflect-padded copy, cropped to the input's size."""
    descriptor = load_spandrel(save_swinir(tmp_path / f"{config}.pth", config))
    window, scale = descriptor.model.window_size, descriptor.scale
    x = torch.rand(1, 3, 37, 23, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = descriptor(x)
        pad_h, pad_w = (-37) % window, (-23) % window
        padded = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        reference = descriptor.model(padded)[..., : 37 * scale, : 23 * scale].clamp(0, 1)
    assert out.shape == (1, 3, 37 * scale, 23 * scale)
    assert torch.allclose(out, reference, atol=1e-5)
    with torch.inference_mode():
        zero_padded = descriptor.model(torch.nn.functional.pad(x, (0, pad_w, 0, pad_h)))[
            ..., : 37 * scale, : 23 * scale
        ]
    assert not torch.allclose(out, zero_padded.clamp(0, 1), atol=1e-4)  # the padding mode matters, and it is reflect


def _install(name: str, config: str, seed: int = 0) -> Path:
    """Put a random network where the registry entry `name` expects its downloaded file."""
    return save_swinir(weights.weights_dir() / weights.get(name).filename, config, seed)


def _jpeg(image: np.ndarray, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("quality", [8, 22, 37, 75])
def test_jpeg_quality_is_read_from_real_quantisation_tables(astronaut: np.ndarray, quality: int) -> None:
    assert jpeg_quality(_jpeg(astronaut, quality).quantization) == quality
    from skimage import data

    assert jpeg_quality(_jpeg(data.camera(), quality).quantization) == quality  # one table: greyscale


def test_the_jpeg_model_follows_the_files_quality(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = tmp_path / "q22.jpg"
    Image.fromarray(astronaut[:96, :96]).save(path, quality=22)
    picture = read_image(path, 10**8)
    assert picture.jpeg_quality == 22
    choice = choose_task_model("jpeg", picture.rgb, picture.jpeg_quality)
    assert (choice.model, choice.level, choice.measured) == ("swinir-jpeg-q20", 20, 22.0)
    assert "quality 22" in choice.reason
    grey = np.repeat(picture.rgb.mean(axis=2, keepdims=True), 3, axis=2)
    assert choose_task_model("jpeg", grey, 9).model == "swinir-gray-jpeg-q10"
    assert choose_task_model("jpeg", picture.rgb, 90).model == "swinir-jpeg-q40"
    assert choose_task_model("jpeg", picture.rgb, None).model == "swinir-jpeg-q40"  # not a JPEG: gentlest


@pytest.mark.parametrize(
    "sigma,expected", [(15, "swinir-denoise-s15"), (25, "swinir-denoise-s25"), (50, "swinir-denoise-s50")]
)
def test_the_denoiser_follows_the_measured_noise(astronaut: np.ndarray, sigma: int, expected: str) -> None:
    rng = np.random.default_rng(0)
    clean = astronaut[:256, :256].astype(np.float32) / 255
    noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape), 0, 1).astype(np.float32)
    assert abs(noise_sigma(noisy) - sigma) < 0.25 * sigma
    assert choose_task_model("denoise", noisy, None).model == expected


def test_every_task_level_has_a_colour_and_a_grey_model() -> None:
    assert sorted(task_models("jpeg", False)) == sorted(task_models("jpeg", True)) == [10, 20, 30, 40]
    assert sorted(task_models("denoise", False)) == sorted(task_models("denoise", True)) == [15, 25, 50]


def test_task_jpeg_at_scale_1_runs_only_the_cleanup_model(astronaut: np.ndarray) -> None:
    _install("swinir-jpeg-q30", "color_jpeg_car")
    engine = FastEngine(Settings(device="cpu", task="jpeg", tile=0))
    image = astronaut[100:133, 200:219].astype(np.float32) / 255  # odd size: 33x19
    result = engine.restore(image, 1.0, context=RestoreContext(source_jpeg_quality=31))
    out = result.image
    assert out.shape == image.shape and out.dtype == np.float32
    info = result.provenance
    assert info["model"] == "swinir-jpeg-q30" and info["enlarging"] is None
    assert info["cleanup"]["level"] == 30 and info["cleanup"]["measured"] == 31.0
    assert info["cleanup"]["weights_sha256"] == weights.file_sha256(weights.local_path(weights.get("swinir-jpeg-q30")))


def test_a_grey_task_model_sees_luma_and_returns_grey_rgb(astronaut: np.ndarray) -> None:
    for level in (15, 25, 50):
        _install(f"swinir-gray-denoise-s{level}", "gray_dn")
    rng = np.random.default_rng(1)
    grey = np.repeat(astronaut[:40, :40].mean(axis=2, keepdims=True) / 255, 3, axis=2)
    noisy = np.clip(grey + rng.normal(0, 50 / 255, grey.shape[:2])[..., None], 0, 1).astype(np.float32)
    engine = FastEngine(Settings(device="cpu", task="denoise", tile=0))
    result = engine.restore(noisy, 1.0)
    out = result.image
    assert result.provenance["cleanup"]["model"].startswith("swinir-gray-denoise-s")
    assert out.shape == noisy.shape and np.array_equal(out[..., 0], out[..., 2])


def test_third_party_warnings_are_shown_only_with_debug(tmp_path: Path, astronaut: np.ndarray) -> None:
    """Building SwinIR makes torch warn about meshgrid; a normal run keeps that off the terminal."""
    import os
    import subprocess
    import sys

    model = save_swinir(tmp_path / "x2.pth", "classical_sr_x2")
    source = tmp_path / "in.png"
    Image.fromarray(astronaut[:24, :24]).save(source)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*debug: str) -> subprocess.CompletedProcess:
        args = [
            sys.executable,
            "-m",
            "studio",
            *debug,
            "restore",
            str(source),
            "--model",
            str(model),
            "--scale",
            "2",
            "-o",
            str(tmp_path / f"out{len(debug)}.png"),
        ]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)

    quiet, loud = run(), run("--debug")
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "meshgrid" not in quiet.stderr and "Warning" not in quiet.stderr
    assert "meshgrid" in loud.stderr


def test_cli_task_jpeg_reads_the_files_quality_then_enlarges_only_when_asked(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    import json

    from typer.testing import CliRunner

    from studio.cli import app

    _install("swinir-jpeg-q20", "color_jpeg_car", seed=3)
    source = tmp_path / "scan.jpg"
    Image.fromarray(astronaut[180:212, 200:236]).save(source, quality=18)
    runner = CliRunner()
    same, bigger = tmp_path / "same.png", tmp_path / "bigger.png"
    result = runner.invoke(
        app, ["restore", str(source), "--task", "jpeg", "--scale", "1", "-o", str(same), "--sidecar"]
    )
    assert result.exit_code == 0, result.output
    details = json.loads((tmp_path / "same.png.json").read_text())["engine_details"]
    assert details["model"] == "swinir-jpeg-q20" and details["enlarging"] is None
    assert details["cleanup"]["measured"] == 18.0 and "JPEG quality 18" in result.stderr
    assert Image.open(same).size == (36, 32)

    result = runner.invoke(
        app,
        [
            "restore",
            str(source),
            "--task",
            "jpeg",
            "--scale",
            "2",
            "-o",
            str(bigger),
            "--sidecar",
            "--model",
            "realesr-animevideov3",
        ],
    )
    assert result.exit_code == 0, result.output
    details = json.loads((tmp_path / "bigger.png.json").read_text())["engine_details"]
    assert details["cleanup"]["model"] == "swinir-jpeg-q20" and details["model"] == "realesr-animevideov3"
    assert Image.open(bigger).size == (72, 64)

    bad = runner.invoke(app, ["restore", str(source), "--task", "deblur"])
    assert bad.exit_code == 2 and "--task 'deblur'" in bad.output


def test_no_task_model_on_disk_stops_the_dry_run_like_the_run(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default install has no SwinIR task model: `--task jpeg --dry-run` says so, with the run's exit code."""
    from typer.testing import CliRunner

    from studio.cli import app

    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(tmp_path / "empty-weights"))
    args = ["restore", str(photo), "--task", "jpeg", "--scale", "1", "-o", str(tmp_path / "o.png")]
    dry, real = CliRunner().invoke(app, [*args, "--dry-run"]), CliRunner().invoke(app, args)
    assert dry.exit_code == real.exit_code == 3, (dry.output, real.output)
    assert "studio weights pull swinir-jpeg-q40" in dry.output and not (tmp_path / "o.png").exists()
