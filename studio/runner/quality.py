"""The automatic quality check: how far a result moved from a faithful (Lanczos) upscale of its input.

One number for the whole picture hides a melted face behind a clean background (issue 23: the quick
start's face was disfigured at 25 dB, above the whole-image alarm). So the check also measures each
region viewers judge on its own: faces (the detector's), text lines and flat areas (studio.ops.regions),
and `departures` words a warning for each region that moved more than its limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from studio.engines.faces.protect import face_mask
from studio.ops.metrics import masked_mean, psnr_db, squared_error_map, ssim_map, ssim_of_map
from studio.ops.regions import flat_mask, text_mask
from studio.ops.resize import resize

QUALITY_MAX_PIXELS = 2_000_000
LOW_PSNR_WARNING_DB = 20.0
"""The whole picture departs strongly below this PSNR against the Lanczos upscale."""
MIN_REGION_SHARE = 0.01
"""A region covering less of the picture is not judged on its own (too few pixels to mean anything)."""
REGION_LIMITS: dict[str, tuple[str, float]] = {
    "faces": ("ssim_vs_lanczos", 0.85),
    "text": ("ssim_vs_lanczos", 0.6),
    "flat": ("psnr_vs_lanczos_db", 26.0),
}
"""Per region, the measure and the value under which it departs strongly. Set from benchmarks/
bench_face_protection.py and bench_region_quality.py (Real-ESRGAN x4plus): faces the engine redrew 0.64-0.84,
protected faces 0.89 and above; text 0.55 on scikit-image's page (letters garbled), 0.66 on its street
text; flat areas 32-38 dB on every photo (26 dB is a visible change of tone or invented texture)."""
REGION_ADVICE = {
    "faces": (
        "faces",
        "the engine may have redrawn them: keep them faithful with --protect-faces, or restore "
        "them with --faces gfpgan",
    ),
    "text": ("text areas", "letters may be misdrawn: check them, or use --engine classical for documents"),
    "flat": ("flat areas", "texture may be invented on smooth surfaces: check them, or pull back with --fidelity 0.5"),
}


def quality_report(source: np.ndarray, result: np.ndarray, face_landmarks: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """PSNR/SSIM of the result against a Lanczos resize of the input, for the whole picture and per region.

    Measured at no more than QUALITY_MAX_PIXELS, so a 100 MP print costs seconds, not gigabytes. Faces
    come from `face_landmarks` (five points each, source pixels); text and flat areas are found in the
    Lanczos image, outside the faces.
    """
    out_h, out_w = result.shape[:2]
    factor = min(1.0, (QUALITY_MAX_PIXELS / (out_h * out_w)) ** 0.5)
    height, width = max(16, round(out_h * factor)), max(16, round(out_w * factor))
    compared = result if factor == 1.0 else resize(result, height, width, "area")
    baseline = resize(source, height, width, "lanczos")
    faces = face_mask(face_landmarks, source.shape[:2], (height, width))
    elsewhere = 1.0 - faces
    masks = {"faces": faces, "text": text_mask(baseline) * elsewhere, "flat": flat_mask(baseline) * elsewhere}
    # each map once: the whole picture and every region read them
    similarity, errors = ssim_map(compared, baseline, np.float32), squared_error_map(compared, baseline)
    regions = {}
    for name, mask in masks.items():
        share = float(mask.mean())
        if share >= MIN_REGION_SHARE:
            regions[name] = {
                "share": round(share, 4),
                "psnr_vs_lanczos_db": _finite(psnr_db(masked_mean(errors, mask))),
                "ssim_vs_lanczos": round(masked_mean(similarity, mask), 4),
            }
    return {
        "psnr_vs_lanczos_db": _finite(psnr_db(float(errors.mean()))),
        "ssim_vs_lanczos": round(ssim_of_map(similarity), 4),
        "regions": regions,
        "measured_at": [width, height],
        "scale": [round(out_w / source.shape[1], 4), round(out_h / source.shape[0], 4)],
    }


def departures(quality: dict[str, Any], faces_restored: bool) -> list[str]:
    """One line per part of the picture that departs strongly from the input (none: all within limits).

    Faces a face model restored are its doing, asked for with --faces: they are measured, not flagged.
    """
    lines = []
    psnr_db = quality.get("psnr_vs_lanczos_db")
    if psnr_db is not None and psnr_db < LOW_PSNR_WARNING_DB:
        lines.append(
            f"result departs strongly from the input (PSNR {psnr_db} dB vs Lanczos); check it for invented detail"
        )
    for name, region in quality.get("regions", {}).items():
        measure, limit = REGION_LIMITS[name]
        value = region.get(measure)
        if value is None or value >= limit or (name == "faces" and faces_restored):
            continue
        label, advice = REGION_ADVICE[name]
        unit = f"SSIM {value:.2f}" if measure.startswith("ssim") else f"PSNR {value} dB"
        lines.append(f"{label} depart strongly from the input ({unit} vs Lanczos); {advice}")
    return lines


def _finite(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None
