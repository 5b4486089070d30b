"""S3Diff through `studio restore --engine onestep` with tiny random files (a toy SD base, the weights file in the
authors' layout, a toy estimator next to it): the run records what made it, the degradation estimate steers
it, and a damaged file stops alike in --dry-run and in the run (random weights; no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("studio.engines.onestep.engine", reason="the onestep engine (branch onestep) is not merged yet")

from typer.testing import CliRunner

from studio.cli import app
from studio.settings import Settings, apply_layer


def restore(photo: Path, files: tuple[Path, Path, Path], out: Path, *extra: str) -> object:
    args = ["restore", str(photo), "--engine", "onestep", "--model", str(files[0]), "--adapter", str(files[1])]
    args += ["--scale", "0.5", "--seed", "7", "-o", str(out), "--overwrite", *extra]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_cli_restores_with_tiny_s3diff_files(tiny_s3diff: tuple[Path, Path, Path], photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    result = restore(photo, tiny_s3diff, out)
    assert result.exit_code == 0, result.output
    details = json.loads(CliRunner().invoke(app, ["info", str(out), "--json"]).stdout)["engine_details"]
    assert details["method"] == "s3diff" and details["guidance"] == 1.07
    assert details["prompt_source"] == "s3diff's fixed prompt" and details["unet_evaluations_per_window"] == 2
    assert set(details["degradation_scores"]) == {"blur", "noise"}
    assert details["estimator_file"].endswith("de_net.pth") and len(details["estimator_sha256"]) == 64


def test_a_damaged_file_stops_alike_in_dry_run_and_run(
    tiny_s3diff: tuple[Path, Path, Path], photo: Path, tmp_path: Path
) -> None:
    data = torch.load(tiny_s3diff[1], weights_only=True)
    key = next(k for k in data["state_dict_vae"] if "lora_B" in k)
    data["state_dict_vae"].pop(key)
    damaged = tmp_path / "s3diff.pkl"
    torch.save(data, damaged)
    (tmp_path / "de_net.pth").write_bytes(tiny_s3diff[2].read_bytes())
    files = (tiny_s3diff[0], damaged, tmp_path / "de_net.pth")
    dry = restore(photo, files, tmp_path / "dry.png", "--dry-run")
    real = restore(photo, files, tmp_path / "real.png")
    assert dry.exit_code == real.exit_code == 2, (dry.output, real.output)
    last = dry.stderr.strip().splitlines()[-1]
    assert f"missing 'state_dict_vae/{key}'" in last and last == real.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "real.png").exists()


@pytest.mark.slow
def test_the_degradation_estimate_steers_the_restoration(tiny_s3diff: tuple[Path, Path, Path]) -> None:
    """The same stage-1 image restored under two degradation estimates (a clean and a grainy input of the same
    scene) gives different outputs: the estimate reaches the LoRA of both the VAE encoder and the UNet."""
    from studio.engines.onestep.engine import OneStepEngine

    values = {"engine": "onestep", "model": str(tiny_s3diff[0]), "adapter": str(tiny_s3diff[1]), "seed": 3, "tile": 0}
    engine = OneStepEngine(apply_layer(Settings(), values, "cli"))
    clean = np.random.default_rng(1).random((16, 16, 3), dtype=np.float32)
    grainy = np.clip(clean + np.random.default_rng(2).normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
    loaded = engine._load()
    outputs, scores = [], []
    for estimate_from in (clean, grainy):
        loaded.model.prepare(estimate_from)
        scores.append(loaded.model.scores)
        stage1 = engine.stage1(clean, 2.0)
        outputs.append(loaded.recipe(stage1, _request(engine), None))
    assert scores[0] != scores[1]
    assert np.abs(outputs[0] - outputs[1]).mean() > 1e-4


def _request(engine: object) -> object:
    from studio.engines.onestep.recipe import OneStepRequest

    facts = engine.selection.method.facts
    return OneStepRequest(
        prompt=facts.prompt, negative_prompt=facts.negative_prompt, guidance=facts.guidance, seed=3, steps=1
    )
