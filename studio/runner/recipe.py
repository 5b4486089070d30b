"""The per-image recipe: engine (with fallback), fidelity, faces, colour fix, alpha, provenance."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from studio import weights
from studio.engines import engine_class
from studio.engines.base import DIFFUSION_SETTINGS, Engine, ProgressFn, output_size
from studio.engines.faces.detect import Face
from studio.engines.faces.networks import DEFAULT_MODEL
from studio.engines.faces.protect import PROTECTED_DETAIL, protect_faces
from studio.errors import StudioError
from studio.io import Picture, bleed_colors, with_pixels
from studio.native import in_background
from studio.ops.colorfix import apply_color_fix
from studio.ops.resize import resize
from studio.runner.choice import EngineCache, run_engine
from studio.runner.quality import quality_report
from studio.settings import Settings
from studio.version import __version__

FACE_MODEL = DEFAULT_MODEL["gfpgan"]
"""The face weights the protection notice suggests (Apache-2.0, the presets' choice)."""


@dataclass
class Restored:
    picture: Picture
    provenance: dict[str, Any]
    notes: list[str]
    faces: list[dict[str, Any]]
    measuring: Future[dict[str, Any]]  # the quality report, measured while the caller encodes the output

    @property
    def quality(self) -> dict[str, Any]:
        """The quality report (waits for the measurement when it is still running)."""
        return self.measuring.result()


def restore_picture(
    picture: Picture,
    cache: EngineCache,
    engine_name: str,
    progress: ProgressFn | None = None,
    run_notes: list[str] | None = None,
) -> Restored:
    """The whole restoration of one decoded picture: engine (with fallback), faces, colour fix, alpha.

    `run_notes` (decisions taken for the whole run) are recorded with the picture's own notes.
    """
    settings = cache.settings
    notes: list[str] = [*(run_notes or []), *picture.notes]
    rgb = picture.rgb if picture.alpha is None else bleed_colors(picture.rgb, picture.alpha)
    # faces no face model will restore are found on the input while the engine runs: the detector's start-up
    # (onnxruntime, ~1.7 s once per process) then leaves the critical path
    early_faces = in_background(_detect_faces, cache, rgb) if _may_guard_faces(settings, engine_name) else None
    engine, engine_result = run_engine(cache, engine_name, rgb, settings.scale, progress, notes, picture.jpeg_quality)
    result, engine_info = engine_result.image, {**engine_result.provenance, "engine": engine.name}
    engine_info.setdefault("license", model_license(engine_info.get("model")))
    out_h, out_w = output_size(rgb.shape[0], rgb.shape[1], settings.scale)
    if result.shape[:2] != (out_h, out_w):
        got = f"{result.shape[1]}x{result.shape[0]}"
        raise StudioError(f"engine {engine.name} returned {got}, expected {out_w}x{out_h}")
    if settings.fidelity and not engine.owns_fidelity:
        # --fidelity pulls the engine's invented detail back toward a plain Lanczos upscale of the input
        baseline = resize(rgb, out_h, out_w, "lanczos")
        result = baseline + (1.0 - settings.fidelity) * (result - baseline)

    faces: list[dict[str, Any]] = []
    face_provenance: dict[str, Any] | None = None
    protection: dict[str, Any] | None = None
    if settings.faces != "none":  # the up-front checks made sure the face weights are here
        face_result = cache.faces().restore(rgb, result)
        result, faces = face_result.image, face_result.faces
        face_provenance = {**face_result.provenance, "license": model_license(face_result.provenance.get("model"))}
        if engine.invents_detail and face_result.left_out:  # too small or too many for the face model
            result, left_out, protection = guard_faces(cache, rgb, result, notes, face_result.left_out)
            faces = [*faces, *left_out]
    elif engine.invents_detail:
        found = early_faces.result() if early_faces is not None else None
        result, faces, protection = guard_faces(cache, rgb, result, notes, found)

    color_fix = settings.color_fix or engine.default_color_fix
    if color_fix != "none":
        reference = engine_result.color_reference
        if reference is None:
            reference = resize(rgb, out_h, out_w, "bicubic")
        result = apply_color_fix(color_fix, result, reference)
    result = np.clip(result, 0.0, 1.0).astype(np.float32)

    alpha = None
    if picture.alpha is not None:
        if settings.alpha == "model" and engine_result.upscale_alpha is not None:
            alpha = engine_result.upscale_alpha(picture.alpha, settings.scale)
        else:
            if settings.alpha == "model":
                notes.append(f"--alpha model: the {engine.name} engine has no network for alpha; used bicubic")
            alpha = resize(picture.alpha, out_h, out_w, "bicubic")

    provenance = {
        "studio_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": engine.name,
        "model": engine_info.get("model"),
        "weights_sha256": engine_info.get("weights_sha256"),
        "engine_details": engine_info,
        "color_fix": color_fix,
        "faces": face_provenance,
        "face_protection": protection,
        "settings": applied_settings(settings, type(engine)),
        "setting_sources": settings.sources,
        "output_size": [out_w, out_h],
        "notes": notes,
    }
    restored = with_pixels(picture, result, alpha, settings.dpi)
    landmarks = [np.asarray(face["landmarks"], np.float64) for face in faces]
    return Restored(restored, provenance, notes, faces, in_background(quality_report, rgb, result, landmarks))


def _may_guard_faces(settings: Settings, engine_name: str) -> bool:
    """Whether `guard_faces` will want the input's faces: no face model asked for, an engine that invents."""
    return settings.faces == "none" and engine_class(engine_name).invents_detail


def _detect_faces(cache: EngineCache, rgb: np.ndarray) -> list[Face]:
    detector = cache.face_detector()
    return detector.detect(rgb) if detector is not None else []


def guard_faces(
    cache: EngineCache, rgb: np.ndarray, result: np.ndarray, notes: list[str], found: list[Face] | None = None
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any] | None]:
    """Faces no face model restores (`found`; None: detect them here, for the quality check too): with
    --protect-faces, keep them faithful.

    Returns the image, one report entry per face (`protected` says whether it was) and the protection's
    provenance (None when nothing was protected).
    """
    if found is None:
        found = _detect_faces(cache, rgb)
    protect = bool(found) and cache.settings.protect_faces
    faces = [{**face.report(), "protected": protect} for face in found]
    if not protect:
        return result, faces, None
    faithful = resize(rgb, result.shape[0], result.shape[1], "lanczos")
    protected = protect_faces(result, faithful, found, rgb.shape[:2])
    left_out = cache.settings.faces != "none"
    notes.append(protection_line(len(found), left_out))
    provenance = {
        "faces": len(found),
        "detector": found[0].detector,
        "reference": "lanczos",
        "engine_detail": PROTECTED_DETAIL,
        "left_out_by_face_model": left_out,
    }
    return protected.image, faces, provenance


def applied_settings(settings: Settings, engine: type[Engine]) -> dict[str, Any]:
    """The settings as they applied to `engine`: its name, without the settings it does not read."""
    ignored = DIFFUSION_SETTINGS - engine.used_settings()
    return {key: value for key, value in {**settings.to_dict(), "engine": engine.name}.items() if key not in ignored}


def model_license(model: str | None) -> str | None:
    """The licence the weights registry records for a model name (None for files and resamplers)."""
    spec = weights.find(model) if model else None
    return spec.license if spec is not None and spec.license else None


def protection_line(count: int, left_out: bool = False) -> str:
    """The one line that says faces were protected, and how to have them restored instead."""
    faces = f"{count} face{'s' if count > 1 else ''}"
    if left_out:
        return (
            f"{faces} that the face model left out kept close to the input; to restore them too, lower "
            "--min-face-size or raise --max-faces (--no-protect-faces: the engine's faces)"
        )
    return (
        f"{faces} kept close to the input (no face model ran; the engine alone redraws small faces); to restore "
        f"faces: `studio weights pull {FACE_MODEL}`, then add --faces gfpgan (--no-protect-faces: the engine's faces)"
    )
