"""Engine choice and fallback: which engine runs, and where to go when it cannot.

Decided from what engine classes say about themselves (`auto_rank`, `auto_needs_gpu`,
`ensembles_and_tasks`), never from names. What an engine needs for one call (the source file's JPEG
quality, the engine lent for `--stage1 fast`) is handed to it in a `RestoreContext`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from studio.devices import has_gpu
from studio.engines import ENGINES, engine_class
from studio.engines.base import Engine, EngineResult, ProgressFn, RestoreContext
from studio.engines.faces import FaceRestorer
from studio.engines.faces.detect import Detector, build_detector, detector_problem
from studio.errors import EngineUnavailable, UsageError, WeightsMissing
from studio.messages import notice
from studio.settings import Settings

STAGE1_ENGINE = "fast"
"""The engine `--stage1 fast` names: lent to the engines that read --stage1."""


def auto_order() -> list[type[Engine]]:
    """The engines `--engine auto` may pick, in the order it tries them."""
    ranked = [entry.load() for entry in ENGINES]
    return sorted((cls for cls in ranked if cls.auto_rank is not None), key=lambda cls: cls.auto_rank)


def ensemble_engine() -> str:
    """The engine that runs ensembles and the --task cleanup models."""
    return next(entry.name for entry in ENGINES if entry.load().ensembles_and_tasks)


def choose_engine(settings: Settings) -> str:
    """Resolve `auto`: a GPU-only engine of the auto order when a GPU and its weights are here, else the
    first engine that needs no GPU (whose own problems are then met by the fallback, with a notice)."""
    if settings.engine != "auto":
        chosen = engine_class(settings.engine)  # validates the name
        if not chosen.ensembles_and_tasks and (settings.ensemble or settings.task != "sr"):
            what = "several --model (an ensemble)" if settings.ensemble else f"--task {settings.task}"
            runs_them = ensemble_engine()
            raise UsageError(
                f"{what} runs on the {runs_them} engine, not {settings.engine}; use --engine {runs_them} or auto"
            )
        return settings.engine
    if settings.ensemble or settings.task != "sr":
        return ensemble_engine()
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
    if settings.task != "sr" or settings.ensemble:
        return None  # no other engine runs SwinIR tasks or ensembles: say what is missing instead
    if settings.engine == "auto":
        order = [cls.name for cls in auto_order() if not cls.auto_needs_gpu]
        later = order[order.index(engine_name) + 1 :] if engine_name in order else order
        return later[0] if later else None
    return None


def engine_settings(settings: Settings, name: str, primary: str) -> Settings:
    """The settings engine `name` runs with: a fallback (or lent stage-1) engine gets its own default model,
    not --model, and no ensemble."""
    if name == primary:
        return settings if settings.engine == name else replace(settings, engine=name)  # `auto` resolved
    return replace(settings, engine=name, model=None, ensemble=None, blend=None)


class EngineCache:
    """Engines are built once per batch and load their models lazily on first use."""

    def __init__(self, settings: Settings, primary: str) -> None:
        self.settings = settings
        self.primary = primary
        self._engines: dict[str, Engine] = {}
        self._faces: Any = None
        self._detector: Detector | None = None
        self.unavailable: dict[str, str] = {}  # engines whose weights are missing: not retried per file

    def get(self, name: str) -> Engine:
        """The engine `name`, built once."""
        if name not in self._engines:
            self._engines[name] = self.build(engine_settings(self.settings, name, self.primary))
        return self._engines[name]

    def context(self, engine: Engine, jpeg_quality: int | None = None) -> RestoreContext:
        """What `engine` is handed for one call: the file's JPEG quality, and for the engines that read
        --stage1 the stage-1 engine (`--stage1 fast` names it) to lend."""
        lent = None
        if "stage1" in engine.used_settings():
            lent = lambda image, scale: self.get(STAGE1_ENGINE).restore(image, scale).image  # noqa: E731
        return RestoreContext(source_jpeg_quality=jpeg_quality, stage1_upscaler=lent)

    def pin_model(self, model: str, source: str) -> None:
        """Keep `model` for every later call of the primary engine: a clip's frames must not switch models
        (the fast engine chooses one by content), and the engine already built keeps what it loaded."""
        pinned = replace(self.settings, model=model)
        pinned.sources = {**self.settings.sources, "model": source}
        self.settings = pinned
        if self.primary in self._engines:
            self._engines[self.primary].settings = engine_settings(pinned, self.primary, self.primary)

    def build(self, settings: Settings) -> Engine:
        """A new engine for `settings` (a server overrides this to reuse engines kept loaded)."""
        return engine_class(settings.engine)(settings)

    def faces(self) -> Any:
        if self._faces is None:
            self._faces = FaceRestorer(self.settings)
        return self._faces

    def face_detector(self) -> Detector | None:
        """The face detector for face protection and the quality check, built once; None when none can run."""
        if self._detector is None and detector_problem() is None:
            self._detector = build_detector(self.settings.device)
        return self._detector


def run_engine(
    cache: EngineCache,
    name: str,
    rgb: np.ndarray,
    scale: float,
    progress: ProgressFn | None,
    notes: list[str],
    jpeg_quality: int | None = None,
) -> tuple[Engine, EngineResult]:
    """Run one engine, following the fallback chain when it raises EngineUnavailable (weights, memory).

    Missing weights are remembered for the batch, so the notice is given once, not per file.
    `jpeg_quality`: the source file's (Picture.jpeg_quality), for the engines that choose a model by it.
    """
    target = fallback_for(cache.settings, name)
    if name in cache.unavailable and target is not None:
        notes.append(cache.unavailable[name])
        return run_engine(cache, target, rgb, scale, progress, notes, jpeg_quality)
    try:
        engine = cache.get(name)
        return engine, engine.restore(rgb, scale, progress, context=cache.context(engine, jpeg_quality))
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
        return run_engine(cache, target, rgb, scale, progress, notes, jpeg_quality)
