"""The engine registry: one explicit, ordered list. Engine modules are imported only when used.

Engines never import each other; `studio.runner` composes them (fallback, faces on top).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.errors import UsageError
from studio.settings import Settings

if TYPE_CHECKING:  # the names of the registry stay importable without numpy, for `studio --help`
    from studio.diffusion.identify import Checkpoint
    from studio.engines.base import Engine


@dataclass(frozen=True)
class EngineEntry:
    name: str
    summary: str
    load: Callable[[], type[Engine]]


def _classical() -> type[Engine]:
    from studio.engines.classical import ClassicalEngine

    return ClassicalEngine


def _fast() -> type[Engine]:
    from studio.engines.fast.engine import FastEngine

    return FastEngine


def _sd_x4() -> type[Engine]:
    from studio.engines.sd_x4.engine import SDx4Engine

    return SDx4Engine


def _stablesr() -> type[Engine]:
    from studio.engines.stablesr.engine import StableSREngine

    return StableSREngine


def _supir() -> type[Engine]:
    from studio.engines.supir.engine import SupirEngine

    return SupirEngine


def _onestep() -> type[Engine]:
    from studio.engines.onestep.engine import OneStepEngine

    return OneStepEngine


ENGINES: tuple[EngineEntry, ...] = (
    EngineEntry("classical", "Lanczos/bicubic resampling; no invented detail, any scale", _classical),
    EngineEntry("fast", "Real-ESRGAN and other spandrel networks; the fast path and the fallback", _fast),
    EngineEntry("sd-x4", "Stable Diffusion x4 upscaler, prompt-steered, tiled latent sampling", _sd_x4),
    EngineEntry(
        "stablesr", "StableSR (official, non-commercial) or an SD tile-ControlNet; --fidelity steers", _stablesr
    ),
    EngineEntry(
        "supir", "SDXL restoration, SUPIR's restoration-guided sampling (tile ControlNet or SUPIR weights)", _supir
    ),
    EngineEntry(
        "onestep", "one-step diffusion (OSEDiff): one UNet evaluation per latent window; --fidelity steers", _onestep
    ),
)


def research_checkpoints() -> list[Checkpoint]:
    """The engines that take a research checkpoint of their own, each with how its files are told apart."""
    from studio.diffusion.identify import Checkpoint

    classes = [entry.load() for entry in ENGINES]
    return [Checkpoint(cls.name, cls.checkpoint_name, cls.checkpoint_layout) for cls in classes if cls.checkpoint_name]


def describe_engines() -> list[dict[str, object]]:
    """Each engine, whether it can run here with default settings and why not (`studio engines`, the API)."""
    settings = Settings()
    rows: list[dict[str, object]] = []
    for entry in ENGINES:
        try:
            availability = entry.load().availability(settings)
            ok, reason = availability.ok, availability.reason
        except ImportError as exc:
            ok, reason = False, f"missing package: {exc.name}"
        rows.append({"engine": entry.name, "available": ok, "reason": reason, "summary": entry.summary})
    return rows


def engine_names() -> list[str]:
    return [entry.name for entry in ENGINES]


def engine_class(name: str) -> type[Engine]:
    for entry in ENGINES:
        if entry.name == name:
            return entry.load()
    raise UsageError(f"--engine {name!r}: expected one of auto, {', '.join(engine_names())}")
