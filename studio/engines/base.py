"""The engine contract: built from settings, loads lazily, one call from image to restored image.

Images inside the core are float32 RGB arrays of shape (H, W, 3) in [0, 1]. Alpha, bit depth, ICC
and EXIF never reach an engine: `studio.io` splits them off and puts them back.

An engine class describes itself (diffusion or not, the settings it reads, its place in `auto`, its
colour-fix default, whether it runs ensembles and --task models), so the runner decides from these
attributes and never from engine names. A call gets what the runner knows in a `RestoreContext` and
returns everything it made in an `EngineResult`: engines keep no per-call state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from studio.devices import describe_dtype, resolve_device
from studio.errors import Availability
from studio.messages import ProgressFn
from studio.settings import Settings, names_in_group

Upscaler = Callable[[np.ndarray, float], np.ndarray]
"""upscale(image, scale) -> image at output_size(H, W, scale): another engine, lent by the runner."""

SAMPLING_SETTINGS = names_in_group("sampling")
"""Settings every diffusion engine reads."""
ADAPTER_SETTINGS = names_in_group("adapter")
"""Settings of the engines steered by an adapter on a base model (stablesr, supir)."""
STABLESR_SETTINGS = names_in_group("stablesr")
"""StableSR-style knobs: how far the schedule runs, the pull toward stage 1, the CFW weight."""
SUPIR_SETTINGS = names_in_group("supir")
"""SUPIR-style knobs: restoration guidance, CFG and control schedules, EDM churn, working size, caption."""
ONESTEP_SETTINGS = names_in_group("onestep")
"""One-step methods (onestep): whether their LoRA is merged into the base."""
DIFFUSION_SETTINGS = SAMPLING_SETTINGS | ADAPTER_SETTINGS | STABLESR_SETTINGS | SUPIR_SETTINGS | ONESTEP_SETTINGS
"""Settings that steer only diffusion engines; an engine that does not read one ignores it (the runner says so,
and provenance leaves it out). Each engine names the ones it reads in `used_settings`."""


AlphaUpscaler = Callable[[np.ndarray, float], np.ndarray]
"""upscale_alpha(alpha (H, W), scale) -> alpha at output_size(H, W, scale), by the network that made the image."""


@dataclass(frozen=True)
class RestoreContext:
    """What the runner hands one `Engine.restore` call besides the pixels.

    `source_jpeg_quality`: the input file's JPEG quality from its quantisation tables (None for other
    formats); engines that remove JPEG artefacts choose their model by it. `stage1_upscaler`: another
    engine, lent for `--stage1 fast` to the engines that read --stage1 (None: not available here).
    """

    source_jpeg_quality: int | None = None
    stage1_upscaler: Upscaler | None = None


NO_CONTEXT = RestoreContext()


@dataclass
class EngineResult:
    """What one `Engine.restore` call made: the image at the requested size, what made it, and what the
    runner needs afterwards.

    `provenance` holds at least `engine`, and `model` (the name that reproduces it with --model)
    when the engine has one; engines add weights hashes and resolved parameters, and record where each
    resolved value came from under `resolved_from`. `color_reference`: the image (at the output size) the
    colour fix should match (None: the runner's bicubic upscale). `upscale_alpha`: the same network for
    the alpha channel (`--alpha model`); None: the engine has none and the runner resizes alpha.
    """

    image: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    color_reference: np.ndarray | None = None
    upscale_alpha: AlphaUpscaler | None = None


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The exact output size every engine must return for a given scale."""
    return max(1, round(height * scale)), max(1, round(width * scale))


class Engine(ABC):
    """Base class of every engine. Subclasses set the class attributes below and implement `restore`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    diffusion: ClassVar[bool] = False
    """A diffusion engine reads DIFFUSION_SETTINGS; the runner warns when they are given to any other."""
    default_color_fix: ClassVar[str] = "none"
    default_model: ClassVar[str | None] = None
    """The weights registry name used without --model (its licence is announced and recorded like a named one)."""
    owns_fidelity: ClassVar[bool] = False  # True: the engine maps --fidelity itself (no Lanczos blend after it)
    invents_detail: ClassVar[bool] = True
    """False: the engine only resamples (classical), so faces need no protection from it (--protect-faces)."""

    ensembles_and_tasks: ClassVar[bool] = False
    """Runs several --model as an ensemble and the --task cleanup models: the runner sends those here."""
    auto_rank: ClassVar[int | None] = None
    """Place in `--engine auto` (lowest first); None: never chosen by auto. Auto falls back down this order."""
    auto_needs_gpu: ClassVar[bool] = False
    """Auto picks this engine only when a GPU is present (it would take minutes per image on a CPU)."""

    bf16: ClassVar[bool] = True
    """bf16 where the device runs it natively when no --dtype is given (False: networks measured in fp16)."""
    checkpoint_name: ClassVar[str | None] = None
    """Name of the research checkpoint this engine takes as --adapter (StableSR, SUPIR); None: it takes none."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def checkpoint_layout(cls, keys: Collection[str]) -> str | None:
        """The layout of this engine's own research checkpoint, told from a file's key names; None: not one."""
        return None

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        """Engine-specific settings this engine reads (the rest of DIFFUSION_SETTINGS do not apply)."""
        return SAMPLING_SETTINGS if cls.diffusion else frozenset()

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """Cheap check (no model loading) used by `studio engines`, `--engine auto` and the up-front checks.

        Raises UsageError for a setting this engine can never accept (an unknown model name).
        """
        return Availability(True)

    @classmethod
    def check_files(cls, settings: Settings) -> None:
        """Check the weights files a run will load, from their indexes (every key and shape; no tensor data),
        before the first pixel in a real run and in --dry-run alike; raise the one line loading would.
        Engines without such files have nothing to check."""
        return None

    @abstractmethod
    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        """Restore `image` (H, W, 3 float32 in [0, 1]) to `output_size(H, W, scale)`, with its provenance.

        Diffusion engines read `settings.seed` as given: the runner's plan always sets one.
        """

    def probe(self) -> None:
        """For --dry-run, where it is cheap: load what the run will load and push a few pixels through it,
        so the dry run fails where the run would (an unreadable model, members that do not fit together).
        Engines whose loading takes minutes (diffusion) check files in `availability` instead."""
        return None

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """For --dry-run: model, tiles, memory and time estimates, without loading anything heavy."""
        out_h, out_w = output_size(height, width, scale)
        plan: dict[str, Any] = {"engine": self.name, "output_size": [out_w, out_h]}
        if self.diffusion:  # which dtype, and why: on a CPU, what the processor runs natively
            requested = self.settings.dtype if "dtype" in self.used_settings() else None
            plan["dtype"] = describe_dtype(resolve_device(self.settings.device), requested, self.bf16)
        return plan
