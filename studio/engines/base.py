"""The engine contract: built from settings, loads lazily, one call from image to restored image.

Images inside the core are float32 RGB arrays of shape (H, W, 3) in [0, 1]. Alpha, bit depth, ICC
and EXIF never reach an engine: `studio.imageio` splits them off and puts them back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from studio.settings import Settings

ProgressFn = Callable[[int, int], None]
"""progress(done, total): called as work units (tiles, steps) finish."""
Upscaler = Callable[[np.ndarray, float], np.ndarray]
"""upscale(image, scale) -> image at output_size(H, W, scale): another engine, lent by the runner."""


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run on this machine now, and if not (or only slowly), why."""

    ok: bool
    reason: str = ""


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The exact output size every engine must return for a given scale."""
    return max(1, round(height * scale)), max(1, round(width * scale))


class Engine(ABC):
    """Base class of every engine. Subclasses set `name`, `summary` and implement `restore`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default_color_fix: ClassVar[str] = "none"
    owns_fidelity: ClassVar[bool] = False  # True: the engine maps --fidelity itself (no Lanczos blend after it)

    source_jpeg_quality: int | None = None
    """Set by the runner before `restore`: the input file's JPEG quality from its quantisation tables
    (None for other formats). Engines that remove JPEG artefacts choose their model by it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stage1_upscaler: Upscaler | None = None  # the runner lends the fast engine (--stage1 fast)

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """Cheap check (no model loading) used by `studio engines`, `--engine auto` and `--dry-run`."""
        return Availability(True)

    @abstractmethod
    def restore(self, image: np.ndarray, scale: float, progress: ProgressFn | None = None) -> np.ndarray:
        """Restore `image` (H, W, 3 float32 in [0, 1]) and return it at `output_size(H, W, scale)`."""

    def color_reference(self) -> np.ndarray | None:
        """The image (at the output size) the colour fix should match; None: the runner's bicubic upscale."""
        return None

    def provenance(self) -> dict[str, Any]:
        """What made the result: model name, weights sha256, engine-specific resolved parameters."""
        return {"engine": self.name}

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """For --dry-run: model, tiles, memory and time estimates, without loading anything heavy."""
        out_h, out_w = output_size(height, width, scale)
        return {"engine": self.name, "output_size": [out_w, out_h]}
