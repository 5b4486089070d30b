"""Faces through `studio restore`: on top of the classical engine, in the report, and when weights are missing.

Uses a tiny random RestoreFormer (random weights: tests the wiring, not the restoration quality).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()


@pytest.fixture
def portrait(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut[:320, 80:400]).save(path)
    return path


def test_faces_on_top_of_the_classical_engine_change_only_the_face(
    tmp_path: Path, portrait: Path, restoreformer_path: Path
) -> None:
    plain, faced, report = tmp_path / "plain.png", tmp_path / "faced.png", tmp_path / "report.json"
    base = ["restore", str(portrait), "--engine", "classical", "--scale", "1.5"]
    assert runner.invoke(app, [*base, "-o", str(plain)]).exit_code == 0
    result = runner.invoke(
        app,
        [
            *base,
            "-o",
            str(faced),
            "--faces",
            "restoreformer",
            "--face-model",
            str(restoreformer_path),
            "--face-fidelity",
            "0.3",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["files"][0]
    assert len(entry["faces"]) == 1
    x0, y0, x1, y1 = entry["faces"][0]["box"]
    a = np.asarray(Image.open(plain), dtype=np.float32)
    b = np.asarray(Image.open(faced), dtype=np.float32)
    changed = np.abs(a - b).max(axis=2) > 2
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 1000
    # every changed pixel lies near the detected face (box in source pixels, output at 1.5x)
    assert xs.min() >= (x0 - 0.6 * (x1 - x0)) * 1.5 and xs.max() <= (x1 + 0.6 * (x1 - x0)) * 1.5
    assert ys.min() >= (y0 - 0.6 * (y1 - y0)) * 1.5 and ys.max() <= (y1 + 0.6 * (y1 - y0)) * 1.5
    info = json.loads(runner.invoke(app, ["info", str(faced), "--json"]).stdout)
    assert info["faces"]["count"] == 1 and info["faces"]["fidelity"] == 0.3


def test_missing_face_weights_exit_3_when_asked_for(tmp_path: Path, portrait: Path) -> None:
    result = runner.invoke(app, ["restore", str(portrait), "--engine", "classical", "--faces", "gfpgan"])
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "studio weights pull gfpgan-1.4" in errors[0]


def test_faces_suggested_by_a_preset_are_skipped_with_a_warning(tmp_path: Path, portrait: Path) -> None:
    out = tmp_path / "out.png"
    result = runner.invoke(
        app, ["restore", str(portrait), "--engine", "classical", "--preset", "old-photo", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.exists()
    lines = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(lines) == 1 and lines[0].endswith("get them with `studio weights pull gfpgan-1.4`")


def test_faces_from_a_preset_run_without_flags_once_the_weights_are_there(
    tmp_path: Path, portrait: Path, restoreformer_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset that turns faces on, and the registry's weights file present: no --faces flag needed."""
    import shutil

    from studio import weights

    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(folder))
    shutil.copy(restoreformer_path, folder / weights.get("restoreformer").filename)
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "faces-on.toml").write_text(
        'name = "faces-on"\ndescription = "test"\npositive = "{prompt}"\nnegative = ""\n'
        '[engines."*"]\nfaces = "restoreformer"\n'
    )
    report = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "restore",
            str(portrait),
            "--engine",
            "classical",
            "--scale",
            "1",
            "--preset",
            "faces-on",
            "--preset-dir",
            str(presets),
            "-o",
            str(tmp_path / "out.png"),
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    (face,) = json.loads(report.read_text())["files"][0]["faces"]
    assert face["detector"] == "retinaface-mobilenet0.25" and face["score"] > 0.99 and len(face["landmarks"]) == 5
