"""Estimate a JPEG's IJG quality from its quantisation tables.

Why: choosing an artefact-removal model (and telling people what they gave us) needs the strength of
the compression, and the tables say it exactly for libjpeg-based encoders.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# fmt: off
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
])
# fmt: on
_IJG_CHROMA = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66] + [99] * 51)
"""The example tables of the JPEG standard (Annex K) that libjpeg scales by quality; order is irrelevant
here because tables are compared sorted."""


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's quality scaling of a base table (jpeg_quality_scaling + baseline clamp)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def jpeg_quality(tables: dict[int, Any]) -> int:
    """The IJG quality (1-100) whose tables are nearest to a file's (Pillow's `image.quantization`).

    Exact for files written by libjpeg-based encoders (Pillow, most cameras' software); for other
    encoders it is the nearest IJG equivalent, which is what choosing an artefact-removal model needs.
    """
    found = [np.sort(np.asarray(tables[key], dtype=np.int64)) for key in sorted(tables)[:2]]
    bases = [np.sort(_IJG_LUMA), np.sort(_IJG_CHROMA)][: len(found)]

    def distance(quality: int) -> int:
        return sum(int(np.abs(_ijg_table(base, quality) - table).sum()) for base, table in zip(bases, found))

    return min(range(1, 101), key=distance)
