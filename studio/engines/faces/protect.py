"""Face protection: keep faces faithful when no face model restores them.

A general-purpose super-resolution network (Real-ESRGAN, a diffusion upscaler) redraws a 30-40 pixel
face from texture statistics, not from what a face is: eyes vanish, mouths melt. Viewers forgive
invented texture on a wall, not on a face. So, when a run finds faces and no face model will restore
them, each face region is pulled back toward the Lanczos upscale of the input (nothing invented), keeping
PROTECTED_DETAIL of the engine's own detail. The region is an ellipse over the face in the FFHQ-aligned
frame (so it follows the face's size and tilt), feathered, and exactly zero elsewhere: outside the faces
the engine's pixels are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from studio.engines.faces.align import (
    FACE_SIZE,
    FFHQ_TEMPLATE_512,
    apply_transform,
    invert_transform,
    rescale_transform,
    similarity_transform,
)
from studio.engines.faces.detect import Face

PROTECTED_DETAIL = 0.25
"""Share of the engine's departure from the Lanczos upscale kept inside a protected face (0 = Lanczos).

Measured by benchmarks/bench_face_protection.py against the clean originals: faces with a quarter of the
engine's detail come closer to the truth (SSIM in the face) than both the Lanczos upscale and the engine.
"""

_ELLIPSE = ((256.0, 300.0), (150.0, 185.0))
"""Centre and half-axes, in the 512x512 FFHQ frame, of the protected ellipse: brows to chin, cheek to cheek."""


@dataclass(frozen=True)
class Protected:
    """The image with its faces protected, and the mask used (output size, 0..1, 0 outside every face)."""

    image: np.ndarray
    mask: np.ndarray


@lru_cache(maxsize=1)
def _frame_mask() -> np.ndarray:
    """The feathered ellipse over the face in the aligned 512x512 frame (1 inside, 0 well outside)."""
    import cv2

    mask = np.zeros((FACE_SIZE, FACE_SIZE), np.float32)
    (cx, cy), (ax, ay) = _ELLIPSE
    cv2.ellipse(mask, (round(cx), round(cy)), (round(ax), round(ay)), 0, 0, 360, 1.0, thickness=-1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=FACE_SIZE / 32)
    mask[mask < 1e-3] = 0.0
    mask.setflags(write=False)
    return mask


def face_mask(
    landmarks: Sequence[np.ndarray], source_shape: tuple[int, int], output_shape: tuple[int, int]
) -> np.ndarray:
    """The union of the faces' feathered ellipses at `output_shape`, from each face's five landmarks in
    source pixels (float32, 0 outside every face)."""
    import cv2

    height, width = output_shape
    mask = np.zeros((height, width), np.float32)
    frame = _frame_mask()
    scale_y, scale_x = height / source_shape[0], width / source_shape[1]
    for points in landmarks:
        to_frame = rescale_transform(similarity_transform(points, FFHQ_TEMPLATE_512), scale_y, scale_x)
        corners = apply_transform(invert_transform(to_frame), [[0, 0], [FACE_SIZE, 0], [0, FACE_SIZE], [FACE_SIZE] * 2])
        x0, y0 = (max(0, int(np.floor(corners[:, axis].min())) - 1) for axis in (0, 1))
        x1 = min(width, int(np.ceil(corners[:, 0].max())) + 2)
        y1 = min(height, int(np.ceil(corners[:, 1].max())) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        roi_to_frame = to_frame @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpAffine(frame, roi_to_frame, (x1 - x0, y1 - y0), flags=flags, borderValue=0)
        np.maximum(mask[y0:y1, x0:x1], warped, out=mask[y0:y1, x0:x1])
    mask[mask < 1e-3] = 0.0
    return np.clip(mask, 0.0, 1.0)


def protect_faces(
    result: np.ndarray, faithful: np.ndarray, faces: Sequence[Face], source_shape: tuple[int, int]
) -> Protected:
    """Pull each face region of `result` toward `faithful` (the Lanczos upscale), keeping PROTECTED_DETAIL.

    Pixels outside every face mask are returned bit for bit as they were.
    """
    mask = face_mask([face.landmarks for face in faces], source_shape, result.shape[:2])
    weight = (mask * (1.0 - PROTECTED_DETAIL))[..., None]
    image = result.copy()
    inside = mask > 0
    image[inside] = result[inside] + weight[inside] * (faithful[inside] - result[inside])
    return Protected(image.astype(np.float32, copy=False), mask)
