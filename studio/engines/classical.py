"""Classical resampling (Lanczos, bicubic): the baseline every AI result is compared to.

Also the choice for fidelity-critical work (evidence, medical, satellite), where inventing detail is
not acceptable. Any scale, fractional included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from studio.engines.base import Engine, ProgressFn, output_size
from studio.errors import UsageError
from studio.ops.resize import resize

METHODS = ("lanczos", "bicubic", "bilinear", "nearest")


class ClassicalEngine(Engine):
    name = "classical"
    summary = "Lanczos/bicubic resampling: no invented detail, any scale, instant"

    @property
    def method(self) -> str:
        method = self.settings.model or "lanczos"
        if method not in METHODS:
            raise UsageError(f"--model {method!r}: the classical engine takes one of {', '.join(METHODS)}")
        return method

    def restore(self, image: np.ndarray, scale: float, progress: ProgressFn | None = None) -> np.ndarray:
        height, width = output_size(image.shape[0], image.shape[1], scale)
        result = resize(image, height, width, self.method)
        if progress:
            progress(1, 1)
        return result

    def provenance(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.method}

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        out_h, out_w = output_size(height, width, scale)
        return {
            "engine": self.name,
            "model": self.method,
            "output_size": [out_w, out_h],
            "tiles": "none (whole image)",
            "memory_estimate_mb": round(out_h * out_w * 3 * 4 * 3 / 1e6, 1),
        }
