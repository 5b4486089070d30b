"""The fast path: one pass of a Real-ESRGAN-style network (anything spandrel loads), tiled, any scale.

Scales other than the model's come from one model pass plus a Lanczos resize (3x = 4x pass, then
down); an AI pass is never applied twice, since re-upscaling an upscale compounds artefacts. With
`--task jpeg|denoise` a SwinIR model cleans the picture at its original size first (swinir_tasks.py);
several `--model` make an ensemble, blended per tile in linear light. The backends (ncnn on CPU, torch
elsewhere) are in backends.py, the content classifier in content.py, tiles and estimates in estimates.py.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from studio import weights
from studio.devices import run_shrinking
from studio.engines.base import NO_CONTEXT, Availability, Engine, EngineResult, ProgressFn, RestoreContext, output_size
from studio.engines.fast.backends import Loaded, NcnnBackend, ensemble_fn, load_model, pass_record
from studio.engines.fast.content import ANIME_MODEL, PHOTO_MODEL, choose
from studio.engines.fast.estimates import auto_tile, estimate
from studio.engines.fast.swinir_tasks import choose_task_model, missing_task_models
from studio.errors import InputError, UsageError, WeightsMissing
from studio.messages import notice, warn
from studio.ops.blend import normalised
from studio.ops.resize import resize
from studio.ops.tiling import retry_tiles, tile_label, tiled_apply
from studio.settings import Settings


@dataclass(frozen=True)
class Enlarged:
    """What the enlarging pass ran: its model(s), the ensemble's weights, why, and the tile used."""

    models: list[Loaded]
    blend: list[float] | None
    reason: str
    tile: int


class FastEngine(Engine):
    """Real-ESRGAN (or any spandrel SR network) in one tiled pass; the fallback of every diffusion engine."""

    name = "fast"
    summary = "Real-ESRGAN and other spandrel networks; the fast path and the fallback"
    auto_rank = 2
    ensembles_and_tasks = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._models: dict[str, Loaded] = {}

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        if importlib.util.find_spec("spandrel") is None:
            return Availability(False, "missing package: spandrel")
        names: list[str] = settings.ensemble or ([settings.model] if settings.model else [PHOTO_MODEL, ANIME_MODEL])
        for name in names:
            spec = weights.find(name)
            if spec is None or spec.kind != "sr":
                try:  # a file, a file in weights/, or one clear error (unknown name: UsageError)
                    weights.resolve(name, "sr")
                except WeightsMissing as exc:
                    return Availability(False, str(exc))
            elif weights.local_path(spec) is None and weights.offline_files(spec) is None:
                return Availability(False, f"weights missing: studio weights pull {spec.name}")
        if settings.task != "sr" and (missing := missing_task_models(settings.task)):
            return Availability(False, missing)
        return Availability(True, "bundled Real-ESRGAN (ncnn on CPU)" if not settings.model else "")

    def _load(self, name: str) -> Loaded:
        if name not in self._models:
            self._models[name] = load_model(name, self.settings)
        return self._models[name]

    def _tile_for(self, models: list[Loaded]) -> int:
        """--tile, else the smallest automatic tile of the models (an ensemble shares one grid)."""
        if self.settings.tile is not None:
            return self.settings.tile
        tiles = [auto_tile(m.arch, m.scale, m.device, m.tiling) for m in models]
        return 0 if all(t == 0 for t in tiles) else min(t for t in tiles if t)

    def _run(
        self,
        models: list[Loaded],
        image: np.ndarray,
        progress: ProgressFn | None,
        blend: list[float] | None = None,
    ) -> tuple[np.ndarray, int]:
        """One pass of a model (or an ensemble, blended per tile) over (H, W, 3) float32, tiled,
        retrying smaller tiles after an out-of-memory.

        A single ncnn model works on numpy arrays and never imports torch (seconds of a short CPU run).
        """
        overlap = self.settings.tile_overlap
        planar = np.ascontiguousarray(image.transpose(2, 0, 1))[None]
        if len(models) == 1 and models[0].backend_name == NcnnBackend.name:
            tile = self._tile_for(models)
            out = tiled_apply(models[0].backend, planar, models[0].scale, tile, overlap, progress)
            return np.clip(out[0], 0.0, 1.0).transpose(1, 2, 0), tile
        import torch

        x = torch.from_numpy(planar)
        scale = max(m.scale for m in models)
        fn = models[0].backend if len(models) == 1 else ensemble_fn(models, blend or [1.0] * len(models), scale)

        def attempt(tile: int) -> torch.Tensor:
            return tiled_apply(fn, x, scale, tile, overlap, progress)

        with torch.inference_mode():
            advice = "use --device cpu or a smaller input"
            tiles = retry_tiles(self._tile_for(models))
            out, used, _ = run_shrinking(attempt, tiles, models[0].device, self.name, tile_label, advice)
            return out[0].clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy(), used

    def _pick(self, image: np.ndarray) -> tuple[list[str], str]:
        if self.settings.ensemble:
            return list(self.settings.ensemble), "ensemble chosen with --model"
        if self.settings.model:
            return [self.settings.model], "chosen with --model"
        name, reason, kind = choose(image)
        if kind == "document":
            warn(f"{reason}: GAN models can invent letter shapes; for fidelity use --engine classical")
        return [name], reason

    def _clean(
        self, image: np.ndarray, progress: ProgressFn | None, jpeg_quality: int | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """--task jpeg|denoise: the matching SwinIR model at the original size (its window padding
        is spandrel's: reflect to the window multiple, cropped back); (cleaned image, its record)."""
        choice = choose_task_model(self.settings.task, image, jpeg_quality)
        loaded = self._load(choice.model)
        if loaded.scale != 1:
            raise UsageError(f"--task {self.settings.task}: '{choice.model}' is a x{loaded.scale} model, expected x1")
        notice(f"--task {self.settings.task}: {choice.reason}")
        cleaned, used = self._run([loaded], image, progress)
        record = {
            "task": self.settings.task,
            "level": choice.level,
            "measured": choice.measured,
            "reason": choice.reason,
            **pass_record(loaded, used),
        }
        return cleaned, record

    def _enlarge(self, image: np.ndarray, scale: float, progress: ProgressFn | None) -> tuple[np.ndarray, Enlarged]:
        """The enlarging pass: one model (or an ensemble) over the image, at the model's scale."""
        names, reason = self._pick(image)
        models = [self._load(name) for name in names]
        model_scale = max(m.scale for m in models)
        if scale > model_scale:
            warn(
                f"--scale {scale:g} is more than the model's x{model_scale}: one model pass, then a Lanczos "
                "resize for the rest (a second AI pass would compound artefacts)"
            )
        blend = self._blend_for(models)
        result, used = self._run(models, image, progress, blend)
        return result, Enlarged(models, blend, reason, used)

    def restore(
        self, image: np.ndarray, scale: float, progress: ProgressFn | None = None, context: RestoreContext = NO_CONTEXT
    ) -> EngineResult:
        _check_image(image)
        out_h, out_w = output_size(image.shape[0], image.shape[1], scale)
        cleanup: dict[str, Any] | None = None
        if self.settings.task != "sr":
            image, cleanup = self._clean(image, progress, context.source_jpeg_quality)
            if scale <= 1:  # nothing to enlarge: no second network pass
                if image.shape[:2] != (out_h, out_w):
                    image = resize(image, out_h, out_w, "lanczos")
                return self._result(image, cleanup, None)
        result, enlarged = self._enlarge(image, scale, progress)
        if result.shape[:2] != (out_h, out_w):
            result = resize(result, out_h, out_w, "lanczos")
        return self._result(result, cleanup, enlarged)

    def _result(self, image: np.ndarray, cleanup: dict[str, Any] | None, enlarged: Enlarged | None) -> EngineResult:
        """The image, its provenance, and the alpha pass by the model that made it (the enlarging one)."""
        alpha_model = enlarged.models[0].name if enlarged is not None else cleanup and cleanup["model"]
        upscale_alpha = partial(self.restore_alpha, model=alpha_model)
        return EngineResult(image, self.provenance(cleanup, enlarged), upscale_alpha=upscale_alpha)

    def restore_alpha(
        self, alpha: np.ndarray, scale: float, model: str | None = None, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Upscale an alpha channel with `model` (the colour pass's; grey replicated to RGB), for `--alpha model`."""
        if alpha.ndim != 2:
            raise InputError(f"alpha must be a 2-D array, got shape {alpha.shape}")
        grey = np.repeat(alpha.astype(np.float32)[..., None], 3, axis=2)
        loaded = self._load(model or self.settings.model or PHOTO_MODEL)
        out_h, out_w = output_size(alpha.shape[0], alpha.shape[1], scale)
        result, _ = self._run([loaded], grey, progress)
        plane = result.mean(axis=2)
        if plane.shape != (out_h, out_w):
            plane = resize(plane, out_h, out_w, "lanczos")
        return plane.astype(np.float32)

    def provenance(self, cleanup: dict[str, Any] | None, enlarged: Enlarged | None) -> dict[str, Any]:
        """The enlarging pass (one model, or every ensemble member with its weight) and any cleanup pass."""
        info: dict[str, Any] = {"engine": self.name, "task": self.settings.task}
        if cleanup is not None:
            info["cleanup"] = cleanup
        if enlarged is None:
            if cleanup is not None:  # --scale 1: the cleanup model made the image
                info.update(model=cleanup["model"], weights_sha256=cleanup["weights_sha256"], enlarging=None)
            return info
        models = enlarged.models
        records = [pass_record(m, enlarged.tile) for m in models]
        info.update(records[0], model_reason=enlarged.reason, tile_overlap=self.settings.tile_overlap)
        if len(models) > 1:
            for record, weight in zip(records, enlarged.blend or []):
                record["weight"] = round(weight, 6)
            info.update(
                model=" + ".join(m.name for m in models),
                weights_sha256=[r["weights_sha256"] for r in records],
                ensemble=records,
                blend_space="linear light (sRGB decoded, weighted mean, encoded)",
                model_scale=max(m.scale for m in models),
            )
        return info

    def _blend_for(self, models: list[Loaded]) -> list[float] | None:
        """An ensemble's weights (--blend, normalised; equal by default); None for one model."""
        return normalised(self.settings.blend or [1.0] * len(models)) if len(models) > 1 else None

    def probe(self) -> None:
        """Load the models named with --model (each ensemble member) and run a 16x16 image through them as
        the run will (blend included); without --model the bundled models need no probe."""
        names = self.settings.ensemble or ([self.settings.model] if self.settings.model else [])
        if names:
            models = [self._load(name) for name in names]
            blend = self._blend_for(models)
            self._run(models, np.full((16, 16, 3), 0.5, np.float32), None, blend)

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """Model, tile grid and rough memory/time, without loading any weights."""
        return estimate(self.settings, height, width, scale, super().plan(height, width, scale))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        raise InputError(f"fast engine expects (H, W, 3) float32, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 2:
        raise InputError(f"image of {image.shape[1]}x{image.shape[0]} px is too small for a network")
