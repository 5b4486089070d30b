"""Ensembles (--model a --model b --blend 0.6,0.4): blended in linear light, one tile grid, full provenance.

Members are tiny random SwinIR x2 networks (tests/support/swinir_fixtures.py) with different seeds, loaded
through the real loader; random weights give clearly different members, which is what a blend needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.swinir_fixtures import save_swinir
from typer.testing import CliRunner

from studio import weights
from studio.cli import app
from studio.engines.fast.engine import FastEngine
from studio.ops.blend import blend_linear, linear_to_srgb, srgb_to_linear
from studio.settings import Settings


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ensemble")
    return (
        save_swinir(folder / "a.pth", "classical_sr_x2", seed=1),
        save_swinir(folder / "b.pth", "classical_sr_x2", seed=2),
    )


def _run(image: np.ndarray, **settings: object) -> tuple[np.ndarray, dict]:
    engine = FastEngine(Settings(**{"device": "cpu", "tile": 0, **settings}))  # type: ignore[arg-type]
    result = engine.restore(image, 2.0)
    return result.image, result.provenance


def _linear(image: np.ndarray) -> np.ndarray:
    return srgb_to_linear(torch.from_numpy(image)).numpy()


def test_the_ensemble_lies_between_its_members_in_linear_light(
    members: tuple[Path, Path], astronaut: np.ndarray
) -> None:
    a, b = (str(p) for p in members)
    image = astronaut[180:204, 200:230].astype(np.float32) / 255
    out_a, _ = _run(image, model=a)
    out_b, _ = _run(image, model=b)
    mixed, info = _run(image, model=a, ensemble=[a, b], blend=[3.0, 2.0])  # normalised to 0.6, 0.4
    lin_a, lin_b, lin_mix = _linear(out_a), _linear(out_b), _linear(mixed)
    assert mixed.shape == out_a.shape == (48, 60, 3)
    assert np.abs(lin_a - lin_b).mean() > 0.02  # the members really differ
    assert np.all(lin_mix >= np.minimum(lin_a, lin_b) - 1e-5) and np.all(lin_mix <= np.maximum(lin_a, lin_b) + 1e-5)
    assert np.allclose(lin_mix, 0.6 * lin_a + 0.4 * lin_b, atol=1e-4)
    assert not np.allclose(mixed, 0.6 * out_a + 0.4 * out_b, atol=1e-3)  # not an average of encoded values

    assert info["model"] == f"{a} + {b}" and info["blend_space"].startswith("linear light")
    assert [(m["model"], m["weight"]) for m in info["ensemble"]] == [(a, 0.6), (b, 0.4)]
    assert info["weights_sha256"] == [weights.file_sha256(Path(a)), weights.file_sha256(Path(b))]


def test_an_ensemble_shares_one_tile_grid(members: tuple[Path, Path], astronaut: np.ndarray) -> None:
    a, b = (str(p) for p in members)
    image = astronaut[150:230, 180:250].astype(np.float32) / 255
    steps: list[tuple[int, int]] = []
    engine = FastEngine(Settings(device="cpu", tile=32, model=a, ensemble=[a, b]))
    result = engine.restore(image, 2.0, lambda done, total: steps.append((done, total)))
    out = result.image
    assert out.shape == (160, 140, 3)
    assert steps[0] == (0, steps[-1][1])  # the grid's size is known before the first tile
    assert steps[-1][0] == steps[-1][1] == len(steps) - 1 > 1  # one pass over the grid, not one per member
    assert result.provenance["tile"] == 32


def test_members_of_different_scales_meet_at_the_larger_one(tmp_path: Path, members: tuple[Path, Path]) -> None:
    x4 = save_swinir(tmp_path / "x4.pth", "lightweight_sr_x4")
    image = np.random.default_rng(0).random((20, 24, 3), dtype=np.float32)
    engine = FastEngine(Settings(device="cpu", tile=0, model=str(members[0]), ensemble=[str(members[0]), str(x4)]))
    result = engine.restore(image, 4.0)
    assert result.image.shape == (80, 96, 3)
    assert result.provenance["model_scale"] == 4


def test_blend_helpers_round_trip_and_reject_bad_weights() -> None:
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)
    assert torch.allclose(blend_linear([x, x], [1, 1]), x, atol=1e-6)
    with pytest.raises(ValueError, match="positive sum"):
        blend_linear([x, x], [0, 0])


def test_cli_ensemble_records_every_model_and_weight(
    tmp_path: Path, members: tuple[Path, Path], astronaut: np.ndarray
) -> None:
    a, b = (str(p) for p in members)
    source = tmp_path / "in.png"
    Image.fromarray(astronaut[180:212, 200:232]).save(source)
    out = tmp_path / "out.png"
    args = [
        "restore",
        str(source),
        "-o",
        str(out),
        "--scale",
        "2",
        "--model",
        a,
        "--model",
        b,
        "--blend",
        "0.6,0.4",
        "--sidecar",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    provenance = json.loads((tmp_path / "out.png.json").read_text())
    assert [(m["model"], m["weight"]) for m in provenance["engine_details"]["ensemble"]] == [(a, 0.6), (b, 0.4)]
    assert f"--model {a} --model {b} --blend 0.6,0.4" in provenance["command"]
    assert Image.open(out).size == (64, 64)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--blend", "1"], "--blend weighs several models"),
        (["--model", "x", "--model", "y", "--blend", "0.5"], "2 models"),
        (["--model", "x", "--model", "y", "--blend", "a,b"], "comma-separated numbers"),
        (["--model", "x", "--model", "y", "--engine", "classical"], "runs on the fast engine"),
    ],
)
def test_cli_rejects_bad_ensembles_in_one_line(tmp_path: Path, photo: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["restore", str(photo), "-o", str(tmp_path / "o.png"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_tasks_and_ensembles_never_fall_back_to_an_engine_that_ignores_them() -> None:
    from studio.runner import fallback_for

    assert fallback_for(Settings(), "fast") == "classical"  # a plain auto run still falls back
    assert fallback_for(Settings(task="jpeg"), "fast") is None
    assert fallback_for(Settings(model="a", ensemble=["a", "b"]), "fast") is None


def test_bundled_models_blend_on_the_default_cpu_ncnn_backend(tmp_path: Path, astronaut: np.ndarray) -> None:
    """The README's ensemble on the default path: bundled ncnn models (numpy in, numpy out) blended in torch.

    The dry run and the real run agree (both exit 0), every member ran in ncnn, and the blend lies between
    what each member gives alone, in linear light.
    """
    source = tmp_path / "in.png"
    Image.fromarray(astronaut[180:196, 200:220]).save(source)
    args = ["restore", str(source), "--model", "realesrgan-x4plus", "--model", "realesr-animevideov3"]
    args += ["--blend", "0.6,0.4", "--sidecar", "-o", str(tmp_path / "out.png")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    real = CliRunner().invoke(app, args)
    assert dry.exit_code == real.exit_code == 0, (dry.output, real.output)
    details = json.loads((tmp_path / "out.png.json").read_text())["engine_details"]
    assert [m["backend"] for m in details["ensemble"]] == ["ncnn-cpu", "ncnn-cpu"]
    mixed = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.float32) / 255
    assert mixed.shape == (64, 80, 3)
    image = astronaut[180:196, 200:220].astype(np.float32) / 255
    alone = [FastEngine(Settings(device="cpu", model=name)).restore(image, 4.0).image for name in args[3:6:2]]
    lin_a, lin_b = (_linear(out) for out in alone)
    assert np.abs(lin_a - lin_b).mean() > 0.005  # the members really differ
    assert np.abs(_linear(mixed) - (0.6 * lin_a + 0.4 * lin_b)).mean() < 2 / 255


def test_dry_run_loads_the_named_models_like_the_run(tmp_path: Path, photo: Path) -> None:
    """A model file spandrel cannot read stops the dry run with the real run's line and exit code."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a network")
    args = ["restore", str(photo), "--model", "realesr-animevideov3", "--model", str(bad)]
    args += ["-o", str(tmp_path / "o.png")]
    dry, real = CliRunner().invoke(app, [*args, "--dry-run"]), CliRunner().invoke(app, args)
    assert dry.exit_code == real.exit_code == 2, (dry.output, real.output)
    assert f"{bad}: cannot load weights" in dry.output and "Traceback" not in dry.output
