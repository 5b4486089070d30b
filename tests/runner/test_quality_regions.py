"""The per-region quality check: faces, text and flat areas each get their own number and their own warning.

Synthetic departures on real scikit-image pictures (a face region scrambled, text lines shifted, noise on
smooth areas) stand in for what an engine can do to each region; a faithful result raises nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from studio.engines.faces.detect import MobileNetDetector
from studio.engines.faces.protect import face_mask
from studio.ops.resize import resize
from studio.runner.quality import departures, quality_report


def _rgb(image: np.ndarray, size: int) -> np.ndarray:
    image = image.astype(np.float32) / 255.0
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    factor = size / max(image.shape[:2])
    return resize(image, round(image.shape[0] * factor), round(image.shape[1] * factor), "area")


def _upscaled(source: np.ndarray) -> np.ndarray:
    return resize(source, source.shape[0] * 2, source.shape[1] * 2, "lanczos")


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, list[np.ndarray]]:
    source = _rgb(data.astronaut(), 160)
    return source, [face.landmarks for face in MobileNetDetector().detect(source)]


def test_a_faithful_result_raises_nothing(portrait) -> None:
    source, landmarks = portrait
    quality = quality_report(source, _upscaled(source), landmarks)
    assert set(quality["regions"]) == {"faces", "flat"}
    assert quality["regions"]["faces"]["ssim_vs_lanczos"] > 0.99
    assert departures(quality, faces_restored=False) == []


def test_a_redrawn_face_is_flagged_though_the_whole_picture_passes(portrait) -> None:
    """The face scrambled (its rows flipped), the rest faithful: the whole-image PSNR stays above 20 dB."""
    source, landmarks = portrait
    result = _upscaled(source)
    region = face_mask(landmarks, source.shape[:2], result.shape[:2])[..., None]
    result = result + region * (np.flip(result, axis=0) - result)
    quality = quality_report(source, np.clip(result, 0, 1), landmarks)
    assert quality["psnr_vs_lanczos_db"] > 20
    lines = departures(quality, faces_restored=False)
    assert len(lines) == 1 and lines[0].startswith("faces depart strongly") and "--protect-faces" in lines[0]
    assert departures(quality, faces_restored=True) == []  # a face model's work, asked for with --faces


def test_misdrawn_text_is_flagged() -> None:
    source = _rgb(data.page(), 192)
    result = _upscaled(source)
    result[:, 3:] = result[:, :-3].copy()  # every stroke moved sideways: same ink, other letters
    lines = departures(quality_report(source, result), faces_restored=False)
    assert any(line.startswith("text areas depart strongly") for line in lines)


def test_texture_invented_on_smooth_areas_is_flagged() -> None:
    source = _rgb(data.rocket(), 160)
    result = _upscaled(source)
    result += np.random.default_rng(0).normal(0.0, 0.08, result.shape[:2])[..., None]
    quality = quality_report(source, np.clip(result, 0, 1))
    lines = departures(quality, faces_restored=False)
    assert any(line.startswith("flat areas depart strongly") for line in lines)
    assert quality["regions"]["flat"]["share"] > 0.5
