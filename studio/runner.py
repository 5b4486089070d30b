"""One job: read -> choose engine -> restore -> faces -> colour fix -> write. Batches and reports.

The runner is the only place that composes engines: fallback when weights are missing or memory runs
out, faces on top of any background engine, colour fix and alpha around any engine.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from studio import __version__
from studio.engines import engine_class
from studio.engines.base import Engine, ProgressFn, output_size
from studio.errors import (
    EnvironmentProblem,
    InputError,
    OutOfMemory,
    StudioError,
    UsageError,
    WeightsMissing,
)
from studio.imageio import (
    FORMAT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    InputSet,
    Picture,
    bleed_colors,
    check_output_path,
    is_supported,
    read_image,
    with_pixels,
    write_image,
    write_text_atomic,
)
from studio.messages import notice, warn
from studio.ops.resize import resize
from studio.settings import Settings

DIFFUSION_ENGINES = ("sd-x4", "stablesr", "supir")
DIFFUSION_ONLY = ("prompt", "negative_prompt", "steps", "guidance", "noise_level", "strength", "scheduler", "offload",
                  "adapter", "adapter_scale", "denoise", "pull", "cfw", "stage1", "restore_tau", "cfg_start",
                  "adapter_scale_start", "churn", "s_noise", "dtype", "min_side", "caption", "caption_model")
LOW_PSNR_WARNING_DB = 20.0
CAPTION_PLACEHOLDER = "{caption}"
QUALITY_MAX_PIXELS = 2_000_000


# ------------------------------------------------------------------------------------------ inputs


@dataclass
class Job:
    """One input and where its result goes. `error` marks an input that failed before reading."""

    source: Path
    output: Path
    error: str | None = None


def folder_output_root(folder: Path) -> Path:
    """Where a folder's results go when no -o is given: a sibling `<folder>_restored/`."""
    return folder.parent / f"{folder.name}_restored"


def default_report_path(inputs: list[Path], output: Path | None) -> Path | None:
    """A batch's report lives in its output folder: -o, or the one folder input's `_restored` sibling."""
    if output is not None:
        return output / "studio_report.json"
    if len(inputs) == 1 and inputs[0].is_dir():
        return folder_output_root(inputs[0]) / "studio_report.json"
    return None


def collect_jobs(inputs: Iterable[Path], output: Path | None, fmt: str, output_is_folder: bool = False) -> list[Job]:
    """Expand files and folders (recursively) into jobs with their output paths.

    No -o: `photo_restored.png` next to a file, `<folder>_restored/` beside a folder.
    With -o and one file: that file name (or a folder, if it is one or was given with a trailing slash).
    With -o and several inputs or a folder: a folder; each folder's tree is mirrored inside it.
    """
    inputs = list(inputs)
    ext = FORMAT_EXTENSIONS[fmt]
    many = len(inputs) > 1 or any(path.is_dir() for path in inputs)
    out_is_dir = output is not None and (many or output_is_folder or output.is_dir())
    if many and output is not None and output.suffix.lower() in SUPPORTED_EXTENSIONS:
        raise UsageError(f"-o {output}: several inputs need an output folder, not an image file name")
    jobs: list[Job] = []
    for path in inputs:
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.is_file() and is_supported(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)  # .thumbs/, .DS_Store
            )
            if not files:
                jobs.append(Job(path, path, error=f"{path}: folder holds no supported images"))
                continue
            if output is None:
                root = folder_output_root(path)
            else:
                root = output / path.name if len(inputs) > 1 else output
            jobs += [Job(f, (root / f.relative_to(path)).with_suffix(ext)) for f in files]
        elif output is None:
            jobs.append(Job(path, path.with_name(f"{path.stem}_restored{ext}")))
        elif out_is_dir:
            jobs.append(Job(path, output / f"{path.stem}{ext}"))
        else:
            jobs.append(Job(path, output))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.output.resolve()
        if job.error is None and key in seen:
            job.error = f"{job.source}: would write the same output as {seen[key]} ({job.output}); rename one"
        seen.setdefault(key, job.source)
    return jobs


# ------------------------------------------------------------------------------------------ results


@dataclass
class JobResult:
    input: str
    output: str | None
    status: str  # ok | failed | skipped
    error: str | None = None
    input_size: list[int] | None = None
    output_size: list[int] | None = None
    engine: str | None = None
    model: str | None = None
    seconds: float = 0.0
    faces: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    results: list[JobResult]
    settings: dict[str, Any]
    sources: dict[str, str]
    studio_version: str = __version__

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def succeeded(self) -> int:
        return sum(r.status == "ok" for r in self.results)

    def to_json(self) -> str:
        from dataclasses import asdict

        data = {
            "studio_version": self.studio_version,
            "summary": {
                "total": len(self.results),
                "succeeded": self.succeeded,
                "failed": self.failed,
                "skipped": sum(r.status == "skipped" for r in self.results),
            },
            "settings": self.settings,
            "setting_sources": self.sources,
            "files": [asdict(r) for r in self.results],
        }
        return json.dumps(data, indent=2, default=str)


# ------------------------------------------------------------------------------------------ engines


def choose_engine(settings: Settings) -> str:
    """Resolve `auto`: a diffusion engine when a GPU and its weights are here, else the fast engine."""
    if settings.engine != "auto":
        engine_class(settings.engine)  # validates the name
        if settings.engine != "fast" and (settings.ensemble or settings.task != "sr"):
            what = "several --model (an ensemble)" if settings.ensemble else f"--task {settings.task}"
            raise UsageError(f"{what} runs on the fast engine, not {settings.engine}; use --engine fast or auto")
        return settings.engine
    if settings.ensemble or settings.task != "sr":
        return "fast"  # ensembles and SwinIR task models are fast-engine features
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
    if settings.task != "sr" or settings.ensemble:
        return None  # no other engine runs SwinIR tasks or ensembles: say what is missing instead
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
        self.jpeg_quality: int | None = None  # of the picture being restored (Picture.jpeg_quality)
        self.faces_skipped: str | None = None  # why faces a preset or config asked for cannot run

    def get(self, name: str) -> Engine:
        """The engine `name`; a fallback engine gets its own default model, not the primary's --model."""
        if name not in self._engines:
            own = name == self.primary
            model, ensemble, blend = (
                (self.settings.model, self.settings.ensemble, self.settings.blend) if own else (None, None, None)
            )
            engine = engine_class(name)(replace(self.settings, engine=name, model=model, ensemble=ensemble, blend=blend))
            if name != "fast":
                engine.stage1_upscaler = lambda image, scale: self.get("fast").restore(image, scale)
            self._engines[name] = engine
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
        engine.source_jpeg_quality = cache.jpeg_quality
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


# ------------------------------------------------------------------------------------------ one job


@dataclass
class Restored:
    picture: Picture
    provenance: dict[str, Any]
    notes: list[str]
    faces: list[dict[str, Any]]
    quality: dict[str, Any]


def restore_picture(
    picture: Picture, cache: EngineCache, engine_name: str, progress: ProgressFn | None = None
) -> Restored:
    """The whole restoration of one decoded picture: engine (with fallback), faces, colour fix, alpha."""
    settings = cache.settings
    notes: list[str] = list(picture.notes)
    rgb = picture.rgb if picture.alpha is None else bleed_colors(picture.rgb, picture.alpha)
    cache.jpeg_quality = picture.jpeg_quality
    engine, result = run_engine(cache, engine_name, rgb, settings.scale, progress, notes)
    out_h, out_w = output_size(rgb.shape[0], rgb.shape[1], settings.scale)
    if result.shape[:2] != (out_h, out_w):
        raise StudioError(f"engine {engine.name} returned {result.shape[1]}x{result.shape[0]}, expected {out_w}x{out_h}")
    if settings.fidelity and not engine.owns_fidelity:
        # --fidelity pulls the engine's invented detail back toward a plain Lanczos upscale of the input
        baseline = resize(rgb, out_h, out_w, "lanczos")
        result = baseline + (1.0 - settings.fidelity) * (result - baseline)

    faces: list[dict[str, Any]] = []
    face_provenance: dict[str, Any] | None = None
    if settings.faces != "none":
        try:
            restorer = cache.faces()
            face_result = restorer.restore(rgb, result)
            result, faces = face_result.image, face_result.faces
            face_provenance = {**restorer.provenance(), "count": len(faces)}
        except WeightsMissing as exc:
            if settings.source_of("faces") == "cli":
                raise
            if cache.faces_skipped is None:  # said once per batch, noted on every file
                cache.faces_skipped = faces_skipped_message(settings, exc)
                warn(cache.faces_skipped)
            notes.append(cache.faces_skipped)

    color_fix = settings.color_fix or engine.default_color_fix
    if color_fix != "none":
        from studio.ops.colorfix import apply_color_fix

        reference = engine.color_reference()
        if reference is None:
            reference = resize(rgb, out_h, out_w, "bicubic")
        result = apply_color_fix(color_fix, result, reference)
    result = np.clip(result, 0.0, 1.0).astype(np.float32)

    alpha = None
    if picture.alpha is not None:
        if settings.alpha == "model" and hasattr(engine, "restore_alpha"):
            alpha = engine.restore_alpha(picture.alpha, settings.scale)
        else:
            if settings.alpha == "model":
                notes.append(f"--alpha model: the {engine.name} engine has no network for alpha; used bicubic")
            alpha = resize(picture.alpha, out_h, out_w, "bicubic")

    engine_info = engine.provenance()
    provenance = {
        "studio_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "engine": engine.name,
        "model": engine_info.get("model"),
        "weights_sha256": engine_info.get("weights_sha256"),
        "engine_details": engine_info,
        "color_fix": color_fix,
        "faces": face_provenance,
        "settings": {**settings.to_dict(), "engine": engine.name},
        "setting_sources": settings.sources,
        "output_size": [out_w, out_h],
        "notes": notes,
    }
    return Restored(with_pixels(picture, result, alpha), provenance, notes, faces, quality_report(rgb, result))


def faces_skipped_message(settings: Settings, exc: WeightsMissing) -> str:
    """One line for faces a preset or config turned on whose weights are missing: how to get them."""
    from studio import weights
    from studio.engines.faces.restorer import model_name

    name = model_name(settings)
    origin = settings.source_of("faces").replace(":", " ", 1)
    if weights.find(name) is None:
        return f"faces ({settings.faces}, from {origin}) skipped: {exc}"
    return f"faces ({settings.faces}, from {origin}) skipped: weights missing; get them with `studio weights pull {name}`"


def quality_report(source: np.ndarray, result: np.ndarray) -> dict[str, Any]:
    """PSNR/SSIM of the result against a Lanczos resize of the input: how far the engine moved away.

    Measured at no more than QUALITY_MAX_PIXELS, so a 100 MP print costs seconds, not gigabytes.
    """
    from studio.ops.metrics import psnr, ssim

    out_h, out_w = result.shape[:2]
    factor = min(1.0, (QUALITY_MAX_PIXELS / (out_h * out_w)) ** 0.5)
    height, width = max(16, round(out_h * factor)), max(16, round(out_w * factor))
    compared = result if factor == 1.0 else resize(result, height, width, "area")
    baseline = resize(source, height, width, "lanczos")
    return {
        "psnr_vs_lanczos_db": _finite(psnr(compared, baseline)),
        "ssim_vs_lanczos": round(float(ssim(compared, baseline)), 4),
        "measured_at": [width, height],
        "scale": [round(out_w / source.shape[1], 4), round(out_h / source.shape[0], 4)],
    }


def _finite(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None


def reproduce_command(source: Path, output: Path, settings: Settings) -> str:
    """The command line that reproduces this output: every value that differs from the defaults."""
    defaults = Settings().to_dict()
    args = ["studio", "restore", str(source), "-o", str(output)]
    for name, value in settings.to_dict().items():
        if name in ("preset", "variables", "sidecar") or value == defaults[name]:
            continue
        if name == "model" and settings.ensemble:
            continue  # written as one --model per ensemble member
        flag = "--" + name.replace("_", "-")
        if name == "ensemble":
            args += [part for member in value for part in ("--model", member)]
        elif name == "blend":
            args += [flag, ",".join(f"{w:g}" for w in value)]
        elif isinstance(value, bool):
            args.append(flag)
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def process_job(job: Job, cache: EngineCache, engine_name: str, all_inputs: InputSet, skip_existing: bool,
                overwrite: bool, progress: ProgressFn | None = None, debug: bool = False) -> JobResult:
    """One file, start to finish. Input and output problems become a failed result, not an exception."""
    started = time.perf_counter()
    settings = cache.settings
    result = JobResult(input=str(job.source), output=str(job.output), status="failed")
    try:
        if job.error:
            raise InputError(job.error)
        if skip_existing and job.output.exists():
            result.status = "skipped"
            result.notes.append("output exists (--skip-existing)")
            return result
        check_output_path(job.output, all_inputs, overwrite)
        if settings.sidecar:
            check_output_path(sidecar_path(job.output), all_inputs, overwrite)
        picture = read_image(job.source, settings.max_pixels)
        result.input_size = list(picture.size)
        if picture.provenance:
            earlier = picture.provenance
            warn(
                f"{job.source.name} is already a studio output ({earlier.get('engine')}, "
                f"{earlier.get('output_size')}); upscaling an upscale piles up artefacts: restore the original "
                "once, at the final scale"
            )
            result.notes.append("input is an earlier studio output")
        for text in picture.notes:
            warn(f"{job.source.name}: {text}")
        restored = restore_picture(picture, cache, engine_name, progress)
        provenance, notes = restored.provenance, restored.notes
        provenance["command"] = reproduce_command(job.source, job.output, replace(settings, engine=provenance["engine"]))
        provenance["input"] = {"name": job.source.name, "size": list(picture.size), "bit_depth": picture.bit_depth}
        result.quality = {**restored.quality, "seconds": round(time.perf_counter() - started, 3)}
        psnr_db = result.quality["psnr_vs_lanczos_db"]
        if psnr_db is not None and psnr_db < LOW_PSNR_WARNING_DB:
            message = f"result departs strongly from the input (PSNR {psnr_db} dB vs Lanczos); check it for invented detail"
            warn(f"{job.source.name}: {message}")
            notes.append(message)
        provenance["quality"] = result.quality
        write_image(job.output, restored.picture, settings.format, settings.quality, provenance, settings.force_jpeg)
        if settings.sidecar:
            write_text_atomic(sidecar_path(job.output), json.dumps(provenance, indent=2, default=str))
        result.status = "ok"
        result.output_size = list(restored.picture.size)
        result.engine = provenance["engine"]
        result.model = provenance["model"]
        result.faces = restored.faces
        result.notes += notes
    except (EnvironmentProblem, UsageError):
        raise  # the same for every file: stop the batch
    except StudioError as exc:
        result.error = str(exc)
    except Exception as exc:  # a bug must not cost the rest of the batch; --debug shows the traceback
        if debug:
            raise
        result.error = f"{job.source}: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details"
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
    return result


# ------------------------------------------------------------------------------------------ batches


def run_batch(
    jobs: list[Job],
    settings: Settings,
    engine_name: str,
    skip_existing: bool = False,
    overwrite: bool = False,
    on_job_start: Callable[[Job, int, int], ProgressFn | None] | None = None,
    on_job_done: Callable[[JobResult], None] | None = None,
    debug: bool = False,
) -> BatchReport:
    """Run every job; a bad file is reported and the batch goes on. Environment problems stop it."""
    cache = EngineCache(settings, engine_name)
    all_inputs = InputSet([job.source for job in jobs])
    results: list[JobResult] = []
    for index, job in enumerate(jobs):
        progress = on_job_start(job, index, len(jobs)) if on_job_start else None
        result = process_job(job, cache, engine_name, all_inputs, skip_existing, overwrite, progress, debug)
        results.append(result)
        if on_job_done:
            on_job_done(result)
    return BatchReport(results=results, settings=settings.to_dict(), sources=dict(settings.sources))


def prepare_settings(
    cli: dict[str, Any], config_file: Path | None = None, preset_dirs: list[Path] | None = None
) -> tuple[Settings, str]:
    """Resolve every layer, pick the engine, apply the preset for that engine and render its prompt.

    The preset's suggested parameters depend on the engine, so the engine is chosen first from the
    other layers; explicit flags still beat the preset.
    """
    from studio.settings import resolve

    settings = resolve(cli, config_file)
    if settings.variables and not settings.preset:
        raise UsageError("--var fills a preset's template; add --preset NAME (studio presets list)")
    if settings.device != "auto":
        from studio.devices import resolve_device

        resolve_device(settings.device)  # a missing GPU is an environment error before any work starts
    engine_name = choose_engine(settings)
    if settings.preset:
        from studio.presets import get_preset

        preset = get_preset(settings.preset, preset_dirs or [])
        origin = f"preset:{preset.name}"
        settings = resolve(cli, config_file, preset.parameters_for(engine_name), origin)
        variables = settings.variables
        if settings.caption and "caption" in preset.variable_names and "caption" not in variables:
            variables = {**variables, "caption": CAPTION_PLACEHOLDER}  # the engine fills it per image
        positive, negative = preset.render(settings.prompt, variables)
        user_negative = settings.negative_prompt
        settings = replace(settings, prompt=positive, negative_prompt=", ".join(filter(None, [negative, user_negative])))
        settings.sources = {**settings.sources, "prompt": origin, "negative_prompt": origin}
    if engine_name not in DIFFUSION_ENGINES:
        ignored = [f"--{name.replace('_', '-')}" for name in DIFFUSION_ONLY if settings.source_of(name) == "cli"]
        if ignored:
            warn(f"{', '.join(ignored)} only steer diffusion engines; the {engine_name} engine ignores them")
    return finalize_seed(settings), engine_name


def finalize_seed(settings: Settings) -> Settings:
    """Pick a concrete seed when none was given, so every output records the seed that made it."""
    if settings.seed is not None:
        return settings
    new = replace(settings, seed=secrets.randbelow(2**31))
    new.sources = {**settings.sources, "seed": "random"}
    return new


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def check_report_path(path: Path, inputs: list[Path], overwrite: bool) -> None:
    """Before any work: the report must not land on an input, an image, a folder or a foreign file."""
    if path.suffix.lower() in SUPPORTED_EXTENSIONS or path in InputSet(inputs):
        raise UsageError(f"--report {path}: looks like an image or is an input; give a .json path")
    if path.is_dir():
        raise UsageError(f"--report {path}: is a folder; give a file name such as {path / 'report.json'}")
    if path.exists() and not overwrite and not _is_studio_report(path):
        raise UsageError(f"--report {path}: exists and is not a studio report; pass --overwrite or choose another path")


def _is_studio_report(path: Path) -> bool:
    try:
        return "studio_version" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False


def write_report(path: Path, report: BatchReport) -> None:
    """The JSON report, written atomically like every output."""
    write_text_atomic(path, report.to_json())


__all__ = [
    "BatchReport",
    "EngineCache",
    "Job",
    "JobResult",
    "choose_engine",
    "collect_jobs",
    "default_report_path",
    "finalize_seed",
    "prepare_settings",
    "process_job",
    "Restored",
    "restore_picture",
    "run_batch",
    "write_report",
]
