"""Engine choice and fallback: which engine runs, and where to go when it cannot.

Decided from what engine classes say about themselves (`auto_rank`, `auto_needs_gpu`), never from names.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from studio.engines import ENGINES, engine_class
from studio.engines.base import Engine, EngineResult, ProgressFn
from studio.errors import EngineUnavailable, WeightsMissing
from studio.messages import notice
from studio.settings import Settings


def auto_order() -> list[type[Engine]]:
    """The engines `--engine auto` may pick, in the order it tries them."""
    ranked = [entry.load() for entry in ENGINES]
    return sorted((cls for cls in ranked if cls.auto_rank is not None), key=lambda cls: cls.auto_rank)


def choose_engine(settings: Settings) -> str:
    """Resolve `auto`: a GPU-only engine of the auto order when a GPU and its weights are here, else the
    first engine that needs no GPU (whose own problems are then met by the fallback, with a notice)."""
    if settings.engine != "auto":
        engine_class(settings.engine)  # validates the name
        return settings.engine
    from studio.devices import has_gpu

    gpu = settings.device != "cpu" and has_gpu()
    for cls in auto_order():
        if not cls.auto_needs_gpu:
            return cls.name
        if gpu and cls.availability(settings).ok:
            return cls.name
    raise AssertionError("the auto order holds no engine that runs without a GPU")


def fallback_for(settings: Settings, engine_name: str) -> str | None:
    """Where to go when `engine_name` cannot run: --fallback wins; auto goes down its own order."""
    if settings.fallback == "none":
        return None
    if settings.fallback:
        return settings.fallback if settings.fallback != engine_name else None
    if settings.engine == "auto":
        order = [cls.name for cls in auto_order() if not cls.auto_needs_gpu]
        later = order[order.index(engine_name) + 1 :] if engine_name in order else order
        return later[0] if later else None
    return None


def engine_settings(settings: Settings, name: str, primary: str) -> Settings:
    """The settings engine `name` runs with: a fallback engine gets its own default model, not --model."""
    return settings if name == primary else replace(settings, engine=name, model=None)


class EngineCache:
    """Engines are built once per batch and load their models lazily on first use."""

    def __init__(self, settings: Settings, primary: str) -> None:
        self.settings = settings
        self.primary = primary
        self._engines: dict[str, Engine] = {}
        self._faces: Any = None
        self.unavailable: dict[str, str] = {}  # engines whose weights are missing: not retried per file

    def get(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = engine_class(name)(engine_settings(self.settings, name, self.primary))
        return self._engines[name]

    def faces(self) -> Any:
        if self._faces is None:
            from studio.engines.faces import FaceRestorer

            self._faces = FaceRestorer(self.settings)
        return self._faces


def run_engine(
    cache: EngineCache, name: str, rgb: np.ndarray, scale: float, progress: ProgressFn | None, notes: list[str]
) -> tuple[Engine, EngineResult]:
    """Run one engine, following the fallback chain when it raises EngineUnavailable (weights, memory).

    Missing weights are remembered for the batch, so the notice is given once, not per file.
    """
    target = fallback_for(cache.settings, name)
    if name in cache.unavailable and target is not None:
        notes.append(cache.unavailable[name])
        return run_engine(cache, target, rgb, scale, progress, notes)
    try:
        engine = cache.get(name)
        return engine, engine.restore(rgb, scale, progress)
    except EngineUnavailable as exc:
        if target is None:
            if cache.settings.engine != "auto" and isinstance(exc, WeightsMissing):
                raise WeightsMissing(f"{exc} (or add --fallback fast)") from None
            raise
        message = f"{name} could not run ({exc}); falling back to the {target} engine"
        if isinstance(exc, WeightsMissing):
            cache.unavailable[name] = message
        notice(message)
        notes.append(message)
        return run_engine(cache, target, rgb, scale, progress, notes)
