"""The decoded picture: float32 RGB for the engines, plus everything else the output must carry back.

Engines only ever see `Picture.rgb`; alpha, bit depth, ICC profile, EXIF, XMP and print resolution
ride along untouched and `with_pixels` hands them to the restored pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Picture:
    """Decoded pixels plus everything that must survive the round trip untouched."""

    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], orientation applied
    alpha: np.ndarray | None = None  # float32 (H, W) straight alpha, or None
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already reset to 1
    xmp: bytes | None = None
    source_format: str = ""
    provenance: dict[str, Any] | None = None  # studio metadata found in the file, if it is an earlier output
    notes: list[str] = field(default_factory=list)
    jpeg_quality: int | None = None  # JPEG inputs: the IJG quality their quantisation tables match best
    dpi: tuple[float, float] | None = None  # print resolution (pixels per inch), when the file states one

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow and people say it."""
        return self.rgb.shape[1], self.rgb.shape[0]


def with_pixels(picture: Picture, rgb: np.ndarray, alpha: np.ndarray | None, dpi: float | None = None) -> Picture:
    """The same picture (depth, profile, metadata) with restored pixels.

    The print resolution grows with the pixels, so the print size stays the same, unless `dpi` sets it.
    """
    resolution = (float(dpi), float(dpi)) if dpi else picture.dpi
    if resolution and not dpi:
        factor_x, factor_y = rgb.shape[1] / picture.rgb.shape[1], rgb.shape[0] / picture.rgb.shape[0]
        resolution = (round(resolution[0] * factor_x, 3), round(resolution[1] * factor_y, 3))
    return replace(picture, rgb=rgb, alpha=alpha, provenance=None, notes=[], dpi=resolution)


def print_size(size: tuple[int, int], dpi: tuple[float, float] | None) -> dict[str, Any]:
    """Physical size in inches and cm at the stored resolution (if any) and at 300 dpi, for people."""

    def at(x: float, y: float) -> dict[str, Any]:
        inches = [round(size[0] / x, 2), round(size[1] / y, 2)]
        return {"dpi": [x, y], "inches": inches, "cm": [round(v * 2.54, 1) for v in inches]}

    return {"stored": at(*dpi) if dpi else None, "at_300_dpi": at(300.0, 300.0)}
