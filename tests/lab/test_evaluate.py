"""`studio evaluate`: Y-channel metrics against scikit-image, colour drift, LPIPS wiring, runs, the CLI's reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.cli import app
from studio.errors import UsageError, WeightsMissing
from studio.lab.runs import parse_run, prepare_run
from studio.ops.metrics import color_drift, luma, psnr_y, ssim_y


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    return astronaut[64:192, 160:288].astype(np.float32) / 255.0


def test_luma_is_bt601_studio_swing() -> None:
    assert luma(np.zeros((4, 4, 3)))[0, 0] * 255 == pytest.approx(16.0)
    assert luma(np.ones((4, 4, 3)))[0, 0] * 255 == pytest.approx(235.0)


def test_psnr_y_crops_the_border_and_matches_skimage(face: np.ndarray) -> None:
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    noisy = np.clip(face + np.random.default_rng(0).normal(0, 0.03, face.shape), 0, 1)
    noisy[:4] = 0.0  # damage only the border: cropped away at scale 4
    expected = peak_signal_noise_ratio(
        rgb2ycbcr(np.round(face * 255) / 255)[4:-4, 4:-4, 0],
        rgb2ycbcr(np.round(noisy * 255) / 255)[4:-4, 4:-4, 0],
        data_range=255,
    )
    assert psnr_y(noisy, face, 4) == pytest.approx(expected, abs=1e-6)
    assert psnr_y(noisy, face, 0) < psnr_y(noisy, face, 4) - 3


def test_psnr_y_of_a_known_offset() -> None:
    grey = np.full((32, 32, 3), 100 / 255)
    brighter = np.full((32, 32, 3), 110 / 255)
    delta_y = 10 * (65.481 + 128.553 + 24.966) / 255  # BT.601 luma gain on 0-255 for equal R, G, B steps
    assert psnr_y(brighter, grey, 4) == pytest.approx(20 * math.log10(255 / delta_y), abs=0.05)


def test_ssim_y_matches_skimage(face: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    blurred = face.copy()
    blurred[1:-1] = (face[:-2] + face[1:-1] + face[2:]) / 3
    a, b = luma(blurred)[2:-2, 2:-2], luma(face)[2:-2, 2:-2]
    expected = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim_y(blurred, face, 2) == pytest.approx(expected, abs=1e-9)
    assert ssim_y(face, face, 2) == pytest.approx(1.0)


def test_color_drift_sees_colour_not_detail(face: np.ndarray) -> None:
    from skimage.color import deltaE_ciede2000, rgb2lab

    noise = np.random.default_rng(1).normal(0, 0.05, face.shape)
    textured = np.clip(face + noise - noise.mean(), 0, 1)
    assert color_drift(textured, face, 8) < 1.0  # detail changed, colour did not
    flat_a, flat_b = np.full((32, 32, 3), [0.5, 0.4, 0.3]), np.full((32, 32, 3), [0.55, 0.4, 0.3])
    expected = deltaE_ciede2000(rgb2lab(flat_a[:1, :1]), rgb2lab(flat_b[:1, :1]))[0, 0]
    assert color_drift(flat_b, flat_a, 8) == pytest.approx(expected, rel=1e-4)


def test_lpips_wiring_with_a_random_backbone(face: np.ndarray, shared_weights_dir: Path) -> None:
    """A random AlexNet (the real one cannot be downloaded here) in the registry's file: checks loading, not quality."""
    import torch
    import torchvision

    from studio.lab.perceptual import build_lpips, load_lpips

    torch.manual_seed(0)
    features = torchvision.models.alexnet().features  # the convolutions LPIPS uses; the classifier is not needed
    with pytest.raises(WeightsMissing, match="features.0.weight"):
        build_lpips({})
    file = shared_weights_dir / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()}, file)
    try:
        lpips_fn = load_lpips()
    finally:
        file.unlink()
    blurred = face.copy()
    blurred[:, 1:-1] = (face[:, :-2] + face[:, 1:-1] + face[:, 2:]) / 3
    assert lpips_fn(face, face) == pytest.approx(0.0, abs=1e-6)
    assert lpips_fn(blurred, face) > lpips_fn(face * 0.999, face) > 0


def test_run_specs_parse_and_validate_like_restore_flags() -> None:
    run = parse_run("engine=fast,fidelity=0.5,prompt=a house, in winter,tile=0")
    assert run.overrides == {"engine": "fast", "fidelity": 0.5, "prompt": "a house, in winter", "tile": 0}
    settings, engine = prepare_run(parse_run("engine=classical,color-fix=lab"), {"scale": 2.0})
    assert engine == "classical" and settings.color_fix == "lab" and settings.seed == 0 and settings.scale == 2.0
    with pytest.raises(UsageError, match="unknown setting 'colour'"):
        parse_run("engine=fast,colour=red")
    with pytest.raises(UsageError, match="conflicts"):
        prepare_run(parse_run("scale=4"), {"scale": 2.0})
    with pytest.raises(UsageError, match="fidelity"):
        prepare_run(parse_run("fidelity=3"), {"scale": 2.0})


@pytest.fixture
def pairs(tmp_path: Path, astronaut: np.ndarray) -> Path:
    from PIL import Image

    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(astronaut[:96, :96]).save(clean / "a.png")
    Image.fromarray(astronaut[200:296, 250:346]).save(clean / "b.png")
    result = CliRunner().invoke(
        app, ["degrade", str(clean), "-o", str(tmp_path / "pairs"), "--profile", "jpeg", "--scale", "2"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "pairs"


def test_cli_scores_each_run_and_writes_reports(pairs: Path, tmp_path: Path) -> None:
    runs_file = tmp_path / "runs.toml"
    runs_file.write_text('[[run]]\nname = "lanczos, lab colours"\nengine = "classical"\ncolor_fix = "lab"\n')
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(pairs),
            "--run",
            "engine=classical",
            "--run",
            "engine=classical,faces=gfpgan",
            "--runs",
            str(runs_file),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "needs `studio weights pull lpips-alexnet`" in result.output
    assert "not run" in result.output and "gfpgan" in result.output
    report = json.loads((pairs / "evaluation.json").read_text())
    assert report["scale"] == 2 and "Y of BT.601" in report["convention"]
    plain, faces, named = report["runs"]
    assert [image["name"] for image in plain["images"]] == ["a", "b"]
    assert faces["unavailable"] and not faces["images"]
    assert named["label"] == "lanczos, lab colours" and named["settings"]["color_fix"] == "lab"
    first = plain["images"][0]
    assert 15 < first["psnr_y"] < 50 and 0 < first["ssim_y"] <= 1 and first["lpips"] is None and first["seconds"] > 0
    summary = plain["summary"]["psnr_y"]
    assert summary["worst"]["value"] == min(image["psnr_y"] for image in plain["images"])
    rows = list(csv.DictReader((pairs / "evaluation.csv").open()))
    assert len(rows) == 5 and rows[0]["lpips"] == "" and float(rows[0]["psnr_y"]) == first["psnr_y"]


def test_cli_errors_are_one_line(tmp_path: Path, pairs: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nothing"), "--run", "engine=classical"])
    assert missing.exit_code == 2 and "studio degrade" in missing.output
    no_run = runner.invoke(app, ["evaluate", str(pairs)])
    assert no_run.exit_code == 2 and "--run" in no_run.output
