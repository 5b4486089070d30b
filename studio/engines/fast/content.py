"""Choosing the fast engine's model by what the picture shows: photo, anime/illustration or document.

Colour-count and Canny edge ratios, as the guide's auto-detector uses, measured on a <=512 px copy; the
measurements are kept so the report can say why a model was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.ops.resize import resize

PHOTO_MODEL = "realesrgan-x4plus"
ANIME_MODEL = "realesrgan-x4plus-anime-6b"


@dataclass(frozen=True)
class ContentStats:
    """Measurements behind `choose`, kept so the report can say why."""

    colour_ratio: float  # distinct 15-bit colours per pixel
    edge_ratio: float  # Canny edge pixels per pixel
    flat_ratio: float  # pixels whose 3x3 neighbourhood barely varies
    grey_ratio: float  # pixels with almost no saturation
    extreme_ratio: float  # pixels near black or white


def content_stats(image: np.ndarray) -> ContentStats:
    """Colour-count and Canny edge ratios, as the guide's auto-detector uses, on a <=512 px copy."""
    import cv2

    height, width = image.shape[:2]
    factor = min(1.0, 512 / max(height, width))
    small = (
        image if factor == 1.0 else resize(image, max(1, round(height * factor)), max(1, round(width * factor)), "area")
    )
    u8 = np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)
    pixels = u8.shape[0] * u8.shape[1]
    packed = (u8[..., 0].astype(np.int32) >> 3) << 10 | (u8[..., 1].astype(np.int32) >> 3) << 5 | (u8[..., 2] >> 3)
    colour_ratio = len(np.unique(packed)) / pixels
    grey = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
    edge_ratio = float(np.count_nonzero(cv2.Canny(grey, 100, 200))) / pixels
    spread = cv2.dilate(grey, np.ones((3, 3), np.uint8)).astype(np.int16) - cv2.erode(grey, np.ones((3, 3), np.uint8))
    flat_ratio = float(np.count_nonzero(spread <= 2)) / pixels
    saturation = u8.max(axis=2).astype(np.int16) - u8.min(axis=2)
    grey_ratio = float(np.count_nonzero(saturation < 16)) / pixels
    extreme_ratio = float(np.count_nonzero((grey < 40) | (grey > 215))) / pixels
    return ContentStats(colour_ratio, edge_ratio, flat_ratio, grey_ratio, extreme_ratio)


def classify(stats: ContentStats) -> str:
    """'document', 'anime' or 'photo'. Documents: colourless, mostly paper or ink. Anime: flat colour
    areas with few distinct colours; photos have sensor noise and gradients, so few flat areas."""
    if stats.grey_ratio > 0.9 and stats.extreme_ratio > 0.75:
        return "document"
    if stats.flat_ratio > 0.45 and stats.colour_ratio < 0.25:
        return "anime"
    return "photo"


def choose(image: np.ndarray) -> tuple[str, str, str]:
    """(registry model, one-line reason, kind: photo, anime or document)."""
    stats = content_stats(image)
    kind = classify(stats)
    numbers = f"{stats.colour_ratio:.0%} distinct colours, {stats.flat_ratio:.0%} flat, {stats.edge_ratio:.0%} edges"
    described = {
        "anime": "anime/illustration",
        "document": "text or a document",
        "photo": "a photo",
    }[kind]
    return (
        (ANIME_MODEL if kind == "anime" else PHOTO_MODEL),
        f"looks like {described} ({numbers})",
        kind,
    )
