"""`studio compare`: one photo restored by several runs, shown side by side.

Writes into the output folder: each run's full result (`NN-<run>.png`, with provenance), `sheet.png`
(the input and the same crop of every run at 1:1 pixels, labelled, over thumbnails of the full images
with the crop marked), `compare.html` (a before/after slider per run, images embedded, no network)
and `compare.json` (the crop and where each panel sits on the sheet).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from studio.engines.base import DIFFUSION_SETTINGS, NO_CONTEXT, Engine, EngineResult
from studio.errors import EnvironmentProblem, UsageError
from studio.io import read_image, write_image, write_png_text, write_text_atomic
from studio.lab.runs import Run, prepare_run
from studio.lab.sheet import draw_sheet, slider_page
from studio.ops.resize import resize
from studio.runner import EngineCache, restore_picture
from studio.settings import DEFAULT_MAX_PIXELS, Settings, setting_fields, spec_of
from studio.settings.table import PANEL_FACES, PANEL_OUTPUT


@dataclass
class RunImage:
    """One run's result; `image` is None when the run could not run (then `error` says why)."""

    label: str
    engine: str | None
    seconds: float
    image: np.ndarray | None
    file: str | None = None
    error: str | None = None
    reused_from: str | None = None  # the run whose engine output this one reused (same engine settings)


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    width: int
    height: int

    def of(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.height, self.x : self.x + self.width]


def parse_crop(text: str) -> Crop:
    """`X,Y,W,H` in output pixels."""
    parts = text.replace("x", ",").split(",")
    try:
        x, y, width, height = (int(part) for part in parts)
    except ValueError:
        raise UsageError(
            f"--crop {text!r}: expected X,Y,WIDTH,HEIGHT in output pixels, e.g. --crop 400,300,256,256"
        ) from None
    if min(x, y) < 0 or min(width, height) < 8:
        raise UsageError(f"--crop {text!r}: needs X, Y >= 0 and a size of at least 8x8")
    return Crop(x, y, width, height)


def fit_crop(crop: Crop, height: int, width: int) -> Crop:
    if crop.x + crop.width > width or crop.y + crop.height > height:
        raise UsageError(f"--crop {crop.x},{crop.y},{crop.width},{crop.height}: outside the {width}x{height} results")
    return crop


def most_different_crop(images: list[np.ndarray], size: int) -> Crop:
    """The size x size window where the images disagree most (summed per-pixel spread of their luminance)."""
    import cv2

    height, width = images[0].shape[:2]
    side_h, side_w = min(size, height), min(size, width)
    luminance = np.stack([image @ np.array([0.299, 0.587, 0.114], np.float32) for image in images])
    spread = luminance.std(axis=0).astype(np.float32)
    window = cv2.boxFilter(spread, -1, (side_w, side_h), normalize=True, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    valid = window[: height - side_h + 1, : width - side_w + 1]  # windows that lie fully inside
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return Crop(int(x), int(y), side_w, side_h)


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_")[:60] or "run"


AFTER_ENGINE_PANELS = (PANEL_FACES, PANEL_OUTPUT)
AFTER_ENGINE = frozenset({"color_fix", "alpha", "fidelity", "threads"})
"""Settings the runner applies after the engine (or that only change its speed): runs that differ only in
these share one engine output. `fidelity` counts only for engines that do not map it themselves."""


def engine_key(settings: Settings, engine: type[Engine]) -> str:
    """What decides an engine's output: its name and every setting it reads, as text."""
    after = AFTER_ENGINE - ({"fidelity"} if engine.owns_fidelity else set())
    ignored = DIFFUSION_SETTINGS - engine.used_settings()
    kept = {
        item.name: getattr(settings, item.name)
        for item in setting_fields()
        if item.name not in after | ignored and spec_of(item).panel not in AFTER_ENGINE_PANELS
    }
    return json.dumps({"engine": engine.name, **kept}, sort_keys=True, default=str)


class ReusingCache(EngineCache):
    """An EngineCache whose engines hand back an output already computed in this comparison for the same
    engine settings (`--run engine=fast --run engine=fast,fidelity=0.5` runs the network once)."""

    def __init__(self, settings: Settings, primary: str, shared: dict[str, tuple[str, EngineResult]], label: str):
        super().__init__(settings, primary)
        self.shared, self.label = shared, label
        self.reused_from: str | None = None

    def build(self, settings: Settings) -> Engine:
        engine = super().build(settings)
        key, run_engine = engine_key(settings, type(engine)), engine.restore

        def restore(image: np.ndarray, scale: float, progress=None, context=NO_CONTEXT) -> EngineResult:
            if key in self.shared:
                self.reused_from, earlier = self.shared[key]
                return replace(earlier, image=earlier.image.copy())
            self.shared[key] = (self.label, run_engine(image, scale, progress, context))
            return self.shared[key][1]

        engine.restore = restore  # type: ignore[method-assign]
        return engine


def restore_runs(photo: Path, runs: list[Run], output: Path, on_done=None) -> tuple[np.ndarray, list[RunImage]]:
    """Restore `photo` with every run through the runner's recipe and write each full result."""
    prepared = [(run, *prepare_run(run, {})) for run in runs]
    scales = {settings.scale for _run, settings, _engine in prepared}
    if len(scales) > 1:
        raise UsageError(f"the runs use different scales {sorted(scales)}; a side-by-side crop needs one scale")
    picture = read_image(photo, DEFAULT_MAX_PIXELS)
    results: list[RunImage] = []
    shared: dict[str, tuple[str, EngineResult]] = {}
    for number, (run, settings, engine_name) in enumerate(prepared, 1):
        started = time.perf_counter()
        cache = ReusingCache(settings, engine_name, shared, run.label)
        try:
            restored = restore_picture(picture, cache, engine_name)
        except EnvironmentProblem as exc:
            results.append(RunImage(run.label, engine_name, 0.0, None, error=str(exc)))
        else:
            seconds = time.perf_counter() - started
            path = output / f"{number:02d}-{slug(run.label)}.png"
            provenance = {**restored.provenance, "compare_run": run.label}
            if cache.reused_from:
                provenance["compare_reused_engine_output_of"] = cache.reused_from
            write_image(path, restored.picture, "png", settings.quality, provenance)
            image = restored.picture.rgb
            engine = restored.provenance["engine"]
            results.append(RunImage(run.label, engine, seconds, image, path.name, reused_from=cache.reused_from))
        if on_done:
            on_done(results[-1])
    if all(result.image is None for result in results):
        raise EnvironmentProblem(f"no run could run: {results[0].error}")
    return picture.rgb, results


def compare(photo: Path, runs: list[Run], output: Path, crop: Crop | None, crop_size: int, on_done=None) -> dict:
    """The whole command: restore, choose the crop, draw the sheet, write the page; returns compare.json's content."""
    source, results = restore_runs(photo, runs, output, on_done)
    done = [result.image for result in results if result.image is not None]
    height, width = done[0].shape[:2]
    baseline = resize(source, height, width, "bicubic")
    if crop is None:
        crop = most_different_crop(done if len(done) > 1 else [baseline, done[0]], crop_size)
    else:
        crop = fit_crop(crop, height, width)
    sheet, layout = draw_sheet(photo.name, source, results, crop)
    write_png_text(output / "sheet.png", sheet, {"studio-compare": json.dumps({"crop": asdict(crop)})})
    write_text_atomic(output / "compare.html", slider_page(photo.name, baseline, results))
    summary = {
        "input": str(photo),
        "crop": asdict(crop),
        "output_size": [width, height],
        "sheet": "sheet.png",
        "page": "compare.html",
        "panels": layout,
        "runs": [
            {
                "label": r.label,
                "engine": r.engine,
                "seconds": round(r.seconds, 3),
                "file": r.file,
                "error": r.error,
                "reused_engine_output_of": r.reused_from,
            }
            for r in results
        ],
    }
    write_text_atomic(output / "compare.json", json.dumps(summary, indent=2))
    return summary
