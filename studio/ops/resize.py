"""Classical resamplers on float images, any (also fractional) factor.

Pillow's float mode ("F") gives properly filtered Lanczos/bicubic in both directions (antialiased
when shrinking), which OpenCV's fixed-support kernels do not, so each channel goes through it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

METHODS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}


def resize(image: np.ndarray, height: int, width: int, method: str = "lanczos", clip: bool = True) -> np.ndarray:
    """Resize a float32 (H, W) or (H, W, C) array to (height, width) with the named filter.

    Lanczos and bicubic overshoot at edges; `clip` keeps the result in [0, 1].
    """
    if method not in METHODS:
        raise ValueError(f"unknown resize method {method!r}; expected one of {', '.join(METHODS)}")
    if image.shape[0] == height and image.shape[1] == width:
        return image.astype(np.float32, copy=True)
    planes = image[..., None] if image.ndim == 2 else image
    out = np.empty((height, width, planes.shape[2]), dtype=np.float32)
    for channel in range(planes.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[..., channel], dtype=np.float32), mode="F")
        out[..., channel] = np.asarray(plane.resize((width, height), METHODS[method]), dtype=np.float32)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out[..., 0] if image.ndim == 2 else out


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """`image` mirrored at its bottom and right edges up to sides divisible by `multiple` (a model's size
    step), or `image` itself when they already are; crop the result back to the original size."""
    pad_h, pad_w = -image.shape[0] % multiple, -image.shape[1] % multiple
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2), mode="symmetric")
