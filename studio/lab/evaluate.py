"""`studio evaluate`: restore every low-quality image of a pairs folder with each run, score it against its clean image.

Convention (stated in every report): PSNR and SSIM on the Y channel of BT.601 YCbCr computed from 8-bit
images, `scale` pixels cropped at each border (as BasicSR, EDSR and the Real-ESRGAN papers do); SSIM with
the 11x11 Gaussian window (sigma 1.5). LPIPS is LPIPS-Alex v0.1 on RGB. Colour drift is the mean
CIEDE2000 after a Gaussian blur of sigma = 2 x scale px, so only colour, not detail, counts.
Seconds and peak memory are per image and include the first image's model loading; peak memory is the
process's resident set on a CPU (the whole process: Python, libraries, models) and the allocator peak on CUDA.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.devices import resolve_device
from studio.errors import EnvironmentProblem, StudioError, UsageError
from studio.io import image_files, read_image, write_text_atomic
from studio.lab.perceptual import BACKBONE, load_lpips
from studio.lab.runs import Run, prepare_run
from studio.ops.metrics import color_drift, psnr_y, ssim_y
from studio.runner import EngineCache, restore_picture
from studio.settings import DEFAULT_MAX_PIXELS
from studio.version import __version__

CONVENTION = (
    "PSNR/SSIM: Y of BT.601 YCbCr from 8-bit images, `scale` px cropped per border, SSIM Gaussian 11x11 sigma 1.5; "
    "LPIPS: LPIPS-Alex v0.1 (lower is closer); colour drift: mean CIEDE2000 after a Gaussian blur of 2 x scale px; "
    "seconds and peak memory per image include model loading on the first image; "
    "peak memory: the process's resident set on CPU, torch's allocator peak on CUDA"
)
METRICS = ("psnr_y", "ssim_y", "lpips", "color_drift", "seconds", "peak_mib")
HIGHER_IS_BETTER = {
    "psnr_y": True,
    "ssim_y": True,
    "lpips": False,
    "color_drift": False,
    "seconds": False,
    "peak_mib": False,
}


@dataclass(frozen=True)
class Pair:
    name: str
    hq: Path
    lq: Path


@dataclass
class ImageScore:
    name: str
    psnr_y: float | None = None
    ssim_y: float | None = None
    lpips: float | None = None
    color_drift: float | None = None
    seconds: float | None = None
    peak_mib: float | None = None
    error: str | None = None


@dataclass
class RunResult:
    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    engine: str | None = None
    unavailable: str | None = None  # why the whole run could not run (missing weights, ...)
    images: list[ImageScore] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Mean, median and the worst image for every metric that has values."""
        out: dict[str, Any] = {}
        for metric in METRICS:
            scored = [(getattr(s, metric), s.name) for s in self.images if getattr(s, metric) is not None]
            if not scored:
                continue
            values = [value for value, _ in scored]
            worst = (min if HIGHER_IS_BETTER[metric] else max)(scored)
            out[metric] = {
                "mean": statistics.fmean(values),
                "median": statistics.median(values),
                "worst": {"image": worst[1], "value": worst[0]},
            }
        return out


# ------------------------------------------------------------------------------------------ pairs


def find_pairs(pairs_dir: Path | None, hq_dir: Path | None, lq_dir: Path | None) -> list[Pair]:
    """Match clean and low-quality images by their path relative to hq/ and lq/, without the suffix."""
    if pairs_dir is not None:
        hq_dir, lq_dir = hq_dir or pairs_dir / "hq", lq_dir or pairs_dir / "lq"
    if hq_dir is None or lq_dir is None:
        raise UsageError("give a pairs folder (made by `studio degrade`) or both --hq DIR and --lq DIR")
    for role, folder in (("clean (hq)", hq_dir), ("low-quality (lq)", lq_dir)):
        if not folder.is_dir():
            raise UsageError(f"{folder}: no {role} folder here; `studio degrade clean/ -o pairs/` makes one")

    def by_name(folder: Path) -> dict[str, Path]:
        return {path.relative_to(folder).with_suffix("").as_posix(): path for path in image_files(folder)}

    clean, low = by_name(hq_dir), by_name(lq_dir)
    pairs = [Pair(name, clean[name], low[name]) for name in sorted(clean.keys() & low.keys())]
    if not pairs:
        raise UsageError(f"no image in {lq_dir} has a clean counterpart of the same name in {hq_dir}")
    return pairs


def pairs_scale(pairs: list[Pair]) -> int:
    """The one whole factor between every clean and low-quality image."""
    from PIL import Image

    scales = set()
    for pair in pairs:
        with Image.open(pair.hq) as hq, Image.open(pair.lq) as lq:
            ratio = (hq.width / lq.width, hq.height / lq.height)
        if ratio[0] != ratio[1] or ratio[0] != int(ratio[0]):
            raise UsageError(
                f"{pair.name}: clean and low-quality sizes differ by {ratio[0]:g} x {ratio[1]:g}, not one whole factor"
            )
        scales.add(int(ratio[0]))
    if len(scales) > 1:
        raise UsageError(f"the pairs mix scales {sorted(scales)}; evaluate one scale at a time")
    return scales.pop()


# ------------------------------------------------------------------------------------------ measuring


class PeakMemory:
    """Peak memory while restoring one image: CUDA's allocator peak on a GPU, else the process's peak resident set."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mib = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        process = psutil.Process()

        def sample() -> None:
            peak = process.memory_info().rss
            while not self._stop.wait(0.005):
                peak = max(peak, process.memory_info().rss)
            self.peak_mib = max(peak, process.memory_info().rss) / 2**20

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        self._thread.join()


def score(
    result: np.ndarray, clean: np.ndarray, scale: int, lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None
) -> dict[str, float | None]:
    return {
        "psnr_y": round(psnr_y(result, clean, scale), 3),
        "ssim_y": round(ssim_y(result, clean, scale), 4),
        "lpips": round(lpips_fn(result, clean), 4) if lpips_fn else None,
        "color_drift": round(color_drift(result, clean, 2.0 * scale), 3),
    }


def evaluate_run(
    run: Run,
    pairs: list[Pair],
    scale: int,
    lpips_fn: Callable | None,
    on_image: Callable[[str, ImageScore], None] | None = None,
) -> RunResult:
    """Restore each pair's low-quality image with the runner's own recipe and score it.

    A run that cannot run at all (its weights are missing) is marked unavailable; the other runs go on.
    """
    settings, engine_name = prepare_run(run, {"scale": float(scale)})
    outcome = RunResult(run.label, settings=settings.to_dict(), engine=engine_name)
    cache = EngineCache(settings, engine_name)
    device = str(resolve_device(settings.device))
    for pair in pairs:
        entry = ImageScore(pair.name)
        try:
            low = read_image(pair.lq, DEFAULT_MAX_PIXELS)
            clean = read_image(pair.hq, DEFAULT_MAX_PIXELS).rgb
            started = time.perf_counter()
            with PeakMemory(device) as memory:
                restored = restore_picture(low, cache, engine_name)
            entry.seconds = round(time.perf_counter() - started, 3)
            entry.peak_mib = round(memory.peak_mib, 1)
            result = restored.picture.rgb
            if result.shape != clean.shape:
                raise StudioError(
                    f"{pair.name}: restored {result.shape[1]}x{result.shape[0]}, clean is "
                    f"{clean.shape[1]}x{clean.shape[0]}"
                )
            for key, value in score(result, clean, scale, lpips_fn).items():
                setattr(entry, key, value)
            outcome.engine = restored.provenance["engine"]
        except EnvironmentProblem as exc:
            outcome.unavailable = str(exc)
            outcome.images = []
            return outcome
        except StudioError as exc:
            entry.error = str(exc)
        outcome.images.append(entry)
        if on_image:
            on_image(run.label, entry)
    return outcome


def lpips_or_reason(device: str = "cpu") -> tuple[Callable | None, str | None]:
    """The LPIPS function, or why the column stays empty (the backbone's weights are not pulled)."""
    try:
        return load_lpips(device), None
    except EnvironmentProblem:
        return None, f"needs `studio weights pull {BACKBONE}`"


# ------------------------------------------------------------------------------------------ reports


def report_json(results: list[RunResult], scale: int, lpips_note: str | None) -> str:
    data = {
        "studio_version": __version__,
        "convention": CONVENTION,
        "scale": scale,
        "lpips": lpips_note or "LPIPS-Alex v0.1",
        "runs": [{**asdict(r), "summary": r.summary()} for r in results],
    }
    return json.dumps(data, indent=2)


def report_csv(results: list[RunResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "engine", "image", *METRICS, "error"])
    for run in results:
        if run.unavailable:
            writer.writerow([run.label, run.engine, "", *[""] * len(METRICS), run.unavailable])
        for image in run.images:
            values = ["" if getattr(image, m) is None else getattr(image, m) for m in METRICS]
            writer.writerow([run.label, run.engine, image.name, *values, image.error or ""])
    return buffer.getvalue()


def write_reports(
    results: list[RunResult], scale: int, lpips_note: str | None, json_path: Path | None, csv_path: Path | None
) -> None:
    if json_path is not None:
        write_text_atomic(json_path, report_json(results, scale, lpips_note))
    if csv_path is not None:
        write_text_atomic(csv_path, report_csv(results))
