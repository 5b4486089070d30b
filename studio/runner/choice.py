"""Engine choice and fallback: which engine runs, and where to go when it cannot."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from studio.engines import engine_class
from studio.engines.base import Engine, ProgressFn
from studio.errors import OutOfMemory, WeightsMissing
from studio.messages import notice
from studio.settings import Settings

DIFFUSION_ENGINES = ("sd-x4",)


def choose_engine(settings: Settings) -> str:
    """Resolve `auto`: a diffusion engine when a GPU and its weights are here, else the fast engine."""
    if settings.engine != "auto":
        engine_class(settings.engine)  # validates the name
        return settings.engine
    from studio.devices import has_gpu

    if has_gpu():
        for name in DIFFUSION_ENGINES:
            if engine_class(name).availability(settings).ok:
                return name
    return "fast"


def fallback_for(settings: Settings, engine_name: str) -> str | None:
    """Where to go when `engine_name` cannot run: --fallback wins; auto falls back on its own."""
    if settings.fallback == "none":
        return None
    if settings.fallback:
        return settings.fallback if settings.fallback != engine_name else None
    if settings.engine == "auto":
        return {"fast": "classical"}.get(engine_name, "fast")
    return None


class EngineCache:
    """Engines are built once per batch and load their models lazily on first use."""

    def __init__(self, settings: Settings, primary: str) -> None:
        self.settings = settings
        self.primary = primary
        self._engines: dict[str, Engine] = {}
        self._faces: Any = None
        self.missing: dict[str, str] = {}  # engines whose weights are missing: not retried per file

    def get(self, name: str) -> Engine:
        """The engine `name`; a fallback engine gets its own default model, not the primary's --model."""
        if name not in self._engines:
            model = self.settings.model if name == self.primary else None
            self._engines[name] = engine_class(name)(replace(self.settings, engine=name, model=model))
        return self._engines[name]

    def faces(self) -> Any:
        if self._faces is None:
            from studio.engines.faces import FaceRestorer

            self._faces = FaceRestorer(self.settings)
        return self._faces


def run_engine(
    cache: EngineCache, name: str, rgb: np.ndarray, scale: float, progress: ProgressFn | None, notes: list[str]
) -> tuple[Engine, np.ndarray]:
    """Run one engine, following the fallback chain when weights are missing or memory runs out.

    Missing weights are remembered for the batch, so the notice is given once, not per file.
    """
    target = fallback_for(cache.settings, name)
    if name in cache.missing and target is not None:
        notes.append(cache.missing[name])
        return run_engine(cache, target, rgb, scale, progress, notes)
    try:
        engine = cache.get(name)
        return engine, engine.restore(rgb, scale, progress)
    except (WeightsMissing, OutOfMemory) as exc:
        if target is None:
            if cache.settings.engine != "auto" and isinstance(exc, WeightsMissing):
                raise WeightsMissing(f"{exc} (or add --fallback fast)") from None
            raise
        message = f"{name} could not run ({exc}); falling back to the {target} engine"
        if isinstance(exc, WeightsMissing):
            cache.missing[name] = message
        notice(message)
        notes.append(message)
        return run_engine(cache, target, rgb, scale, progress, notes)
