"""`studio restore --engine sd-x4` end to end with a tiny random SD x4 folder, and the fallback chain.

Random weights: these test the wiring (loading through the real loader, preset prompts, colour fix,
metadata, reproducibility), not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app
from studio.testing.tiny_sd import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_components,
    save_as_diffusers_folder,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sd_x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd-x4")
    save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), folder)
    return folder


def _restore(*args: object) -> object:
    return runner.invoke(app, ["restore", *[str(a) for a in args]])


def test_sd_x4_through_the_cli_with_preset_seed_and_metadata(tmp_path: Path, photo: Path, tiny_sd_x4: Path) -> None:
    base = [
        photo,
        "--engine",
        "sd-x4",
        "--model",
        tiny_sd_x4,
        "--steps",
        "2",
        "--seed",
        "11",
        "--preset",
        "old-photo",
        "--prompt",
        "an astronaut",
    ]
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    result = _restore(*base, "-o", first)
    assert result.exit_code == 0, result.output
    assert _restore(*base, "-o", second).exit_code == 0
    a, b = np.asarray(Image.open(first)), np.asarray(Image.open(second))
    assert a.shape == (192, 256, 3)  # 4x of 64x48
    np.testing.assert_array_equal(a, b)  # same seed and settings -> same pixels
    info = json.loads(runner.invoke(app, ["info", str(first), "--json"]).stdout)
    details = info["engine_details"]
    assert info["engine"] == "sd-x4" and info["color_fix"] == "wavelet"
    assert details["seed"] == 11 and details["steps"] == 2 and details["noise_level"] == 40  # preset's value
    assert details["prompt"].startswith("an astronaut, restored old photograph")
    assert "--seed 11" in info["command"] and "--engine sd-x4" in info["command"]


def test_colour_fix_pulls_the_result_towards_the_source_colours(tmp_path: Path, photo: Path, tiny_sd_x4: Path) -> None:
    """Random weights produce wrong colours; the wavelet fix must bring the mean colour back to the input's."""
    source = np.asarray(Image.open(photo), dtype=np.float32).mean(axis=(0, 1))
    means = {}
    for fix in ("none", "wavelet"):
        out = tmp_path / f"{fix}.png"
        result = _restore(
            photo,
            "--engine",
            "sd-x4",
            "--model",
            tiny_sd_x4,
            "--steps",
            "2",
            "--seed",
            "3",
            "--color-fix",
            fix,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.output
        means[fix] = np.asarray(Image.open(out), dtype=np.float32).mean(axis=(0, 1))
    assert np.abs(means["wavelet"] - source).max() < 3.0
    assert np.abs(means["wavelet"] - source).max() < np.abs(means["none"] - source).max()


def test_explicit_sd_x4_without_weights_exits_3_and_fallback_is_opt_in(tmp_path: Path, photo: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = _restore(photo, "--engine", "sd-x4", "--model", missing, "-o", tmp_path / "x.png")
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--fallback fast" in errors[0]
    assert not (tmp_path / "x.png").exists()

    report = tmp_path / "report.json"
    result = _restore(
        photo,
        "--engine",
        "sd-x4",
        "--model",
        missing,
        "--fallback",
        "classical",
        "-o",
        tmp_path / "y.png",
        "--report",
        report,
    )
    assert result.exit_code == 0, result.output
    assert "falling back to the classical engine" in result.stderr
    entry = json.loads(report.read_text())["files"][0]
    assert entry["engine"] == "classical" and any("falling back" in note for note in entry["notes"])


def test_a_batch_reports_a_missing_engine_once_and_falls_back_for_every_file(tmp_path: Path, astronaut) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(astronaut[index * 40 : index * 40 + 32, :32]).save(folder / f"{index}.png")
    out = tmp_path / "out"
    result = _restore(
        folder,
        "--engine",
        "sd-x4",
        "--model",
        tmp_path / "missing",
        "--fallback",
        "classical",
        "--scale",
        "2",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.count("falling back to the classical engine") == 1
    report = json.loads((out / "studio_report.json").read_text())
    assert [f["engine"] for f in report["files"]] == ["classical"] * 3
    assert all(any("falling back" in note for note in f["notes"]) for f in report["files"])
