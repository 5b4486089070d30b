"""Classical resampling (Lanczos, bicubic): the baseline every AI result is compared to.

Also the choice for fidelity-critical work (evidence, medical, satellite), where inventing detail is
not acceptable. Any scale, fractional included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from studio.engines.base import NO_CONTEXT, Availability, Engine, EngineResult, ProgressFn, RestoreContext, output_size
from studio.errors import UsageError
from studio.ops.resize import resize
from studio.settings import Settings

METHODS = ("lanczos", "bicubic", "bilinear", "nearest")


class ClassicalEngine(Engine):
    name = "classical"
    summary = "Lanczos/bicubic resampling: no invented detail, any scale, instant"
    auto_rank = 3  # the last resort: it always runs
    invents_detail = False

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        _method(settings)
        return Availability(True)

    @property
    def method(self) -> str:
        return _method(self.settings)

    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        height, width = output_size(image.shape[0], image.shape[1], scale)
        result = resize(image, height, width, self.method)
        if progress:
            progress(1, 1)
        return EngineResult(result, {"engine": self.name, "model": self.method})

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        out_h, out_w = output_size(height, width, scale)
        return {
            "engine": self.name,
            "model": self.method,
            "output_size": [out_w, out_h],
            "tiles": "none (whole image)",
            "memory_estimate_mb": round(out_h * out_w * 3 * 4 * 3 / 1e6, 1),
        }


def _method(settings: Settings) -> str:
    """--model names the resampling method for this engine."""
    method = settings.model or "lanczos"
    if method not in METHODS:
        raise UsageError(f"--model {method!r}: the classical engine takes one of {', '.join(METHODS)}")
    return method
