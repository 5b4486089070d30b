"""Regions of a picture that the quality check judges on their own: text and flat areas.

One whole-image number hides what viewers notice first: a changed face, misdrawn letters, texture
invented on a smooth wall. These masks (float32 (H, W), 0..1) split the picture so each region gets its
own number. Both are cheap OpenCV heuristics on the faithful (Lanczos) image, not trained detectors.
"""

from __future__ import annotations

import numpy as np

FLAT_SPREAD = 0.02
"""A pixel is flat when the luma's standard deviation around it (after light smoothing) is under this."""
TEXT_MIN_HEIGHT = 8
"""Text lines lower than this many pixels are not looked for (too small to judge)."""
TEXT_MIN_FILL = 0.35
"""Share of a candidate line's box covered by strokes; less is texture, not text."""
TEXT_MIN_ASPECT = 2.5
"""A candidate line is at least this many times wider than high (a word, not an eye or a button)."""


def _gray_u8(image: np.ndarray) -> np.ndarray:
    rgb = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return rgb if rgb.ndim == 2 else (rgb @ np.array([299, 587, 114]) // 1000).astype(np.uint8)


def flat_mask(image: np.ndarray) -> np.ndarray:
    """1 where the picture is smooth (sky, walls, skin-free backgrounds): local spread under FLAT_SPREAD.

    Grain and JPEG noise are smoothed away first (Gaussian, sigma 1.5 px), so a grainy wall still counts as flat.
    """
    import cv2

    gray = cv2.GaussianBlur(_gray_u8(image).astype(np.float32) / 255.0, (0, 0), 1.5)
    mean = cv2.blur(gray, (9, 9))
    spread = np.sqrt(np.maximum(cv2.blur(gray * gray, (9, 9)) - mean * mean, 0.0))
    flat = (spread < FLAT_SPREAD).astype(np.uint8)
    flat = cv2.morphologyEx(flat, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))  # drop specks between details
    return flat.astype(np.float32)


def text_mask(image: np.ndarray) -> np.ndarray:
    """1 over boxes that look like lines of text: dense, high-contrast strokes joined along a row.

    Morphological gradient, Otsu threshold, a horizontal closing that merges letters into words, then the
    connected boxes at least TEXT_MIN_ASPECT times wider than high, TEXT_MIN_HEIGHT px high and
    TEXT_MIN_FILL full of strokes.
    """
    import cv2

    gray = _gray_u8(image)
    gradient = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    _, strokes = cv2.threshold(gradient, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    joined = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    mask = np.zeros(gray.shape, np.float32)
    max_height = max(TEXT_MIN_HEIGHT, gray.shape[0] // 8)
    for x, y, width, height, _ in stats[1:count]:
        if not TEXT_MIN_HEIGHT <= height <= max_height or width < TEXT_MIN_ASPECT * height:
            continue
        if strokes[y : y + height, x : x + width].mean() >= TEXT_MIN_FILL:
            mask[y : y + height, x : x + width] = 1.0
    return mask
