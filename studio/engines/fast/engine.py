"""The fast path: one pass of a Real-ESRGAN-style network (anything spandrel loads), tiled, any scale.

Backends: on CUDA/MPS the spandrel model in torch (fp16 where the architecture allows, channels_last,
inference_mode); on CPU, models that came from bundled ncnn files run in ncnn itself (when the `ncnn`
package is installed, else in torch), which was the fastest CPU runtime measured for them
(benchmarks/bench_fast.py) and is by definition pixel-identical to ncnn's reference output; that path
imports no torch at all (benchmarks/bench_fast_e2e.py). Everything else runs in torch (channels_last).

Scales other than the model's come from one model pass plus a Lanczos resize (3x = 4x pass, then
down); an AI pass is never applied twice, since re-upscaling an upscale compounds artefacts.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio import weights
from studio.engines.base import Availability, Engine, EngineResult, ProgressFn, output_size
from studio.errors import InputError, StudioError, UsageError, WeightsMissing
from studio.messages import notice, warn
from studio.native import run_interruptible
from studio.ops.blend import blend_linear, normalised
from studio.ops.resize import resize
from studio.ops.tiling import retry_smaller_tiles, tile_grid, tiled_apply
from studio.settings import Settings

if TYPE_CHECKING:
    import torch

PHOTO_MODEL = "realesrgan-x4plus"
ANIME_MODEL = "realesrgan-x4plus-anime-6b"

CPU_TILE = 288
"""Largest automatic tile on CPU: keeps peak memory flat as images grow (measured in bench_fast.py)."""

GPU_TILE_MAX = 1024

_VALUES_PER_OUTPUT_PIXEL = {
    "RRDBNet": 12 * 64,
    "ESRGAN": 12 * 64,
    "SRVGGNetCompact": 64,
    "Compact": 64,
}
"""float32 values held per *output* pixel at the peak of a forward pass, measured with bench_fast.py:
x4plus 256->1024 peaked 3.2 GB above the process baseline in ncnn (winograd buffers and 64-channel
maps at output size, ~12 maps), animevideo-v3 ~0.2 GB (~45 values)."""
# transformers (SwinIR, HAT) and unknown networks: be conservative
_DEFAULT_VALUES_PER_OUTPUT_PIXEL = 16 * 64

MACS_PER_INPUT_PIXEL = {"RRDBNet": 17.9e6, "ESRGAN": 17.9e6}
"""Multiply-adds per input pixel of Real-ESRGAN x4plus (23 blocks), for GFLOP/s figures and estimates."""

CPU_FLOPS = 50e9
"""Rough CPU throughput for --dry-run time estimates, counted as 2 x the network's multiply-adds:
bench_fast.py measured 50-114 GFLOP/s for x4plus in ncnn (winograd) on one busy EPYC core."""


# ---------------------------------------------------------------- choosing a model by content


@dataclass(frozen=True)
class ContentStats:
    """Measurements behind `choose_model`, kept so the report can say why."""

    colour_ratio: float  # distinct 15-bit colours per pixel
    edge_ratio: float  # Canny edge pixels per pixel
    flat_ratio: float  # pixels whose 3x3 neighbourhood barely varies
    grey_ratio: float  # pixels with almost no saturation
    extreme_ratio: float  # pixels near black or white


def content_stats(image: np.ndarray) -> ContentStats:
    """Colour-count and Canny edge ratios, as the guide's auto-detector uses, on a <=512 px copy."""
    import cv2

    height, width = image.shape[:2]
    factor = min(1.0, 512 / max(height, width))
    small = (
        image if factor == 1.0 else resize(image, max(1, round(height * factor)), max(1, round(width * factor)), "area")
    )
    u8 = np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)
    pixels = u8.shape[0] * u8.shape[1]
    packed = (u8[..., 0].astype(np.int32) >> 3) << 10 | (u8[..., 1].astype(np.int32) >> 3) << 5 | (u8[..., 2] >> 3)
    colour_ratio = len(np.unique(packed)) / pixels
    grey = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
    edge_ratio = float(np.count_nonzero(cv2.Canny(grey, 100, 200))) / pixels
    spread = cv2.dilate(grey, np.ones((3, 3), np.uint8)).astype(np.int16) - cv2.erode(grey, np.ones((3, 3), np.uint8))
    flat_ratio = float(np.count_nonzero(spread <= 2)) / pixels
    saturation = u8.max(axis=2).astype(np.int16) - u8.min(axis=2)
    grey_ratio = float(np.count_nonzero(saturation < 16)) / pixels
    extreme_ratio = float(np.count_nonzero((grey < 40) | (grey > 215))) / pixels
    return ContentStats(colour_ratio, edge_ratio, flat_ratio, grey_ratio, extreme_ratio)


def classify(stats: ContentStats) -> str:
    """'document', 'anime' or 'photo'. Documents: colourless, mostly paper or ink. Anime: flat colour
    areas with few distinct colours; photos have sensor noise and gradients, so few flat areas."""
    if stats.grey_ratio > 0.9 and stats.extreme_ratio > 0.75:
        return "document"
    if stats.flat_ratio > 0.45 and stats.colour_ratio < 0.25:
        return "anime"
    return "photo"


def choose_model(image: np.ndarray) -> tuple[str, str]:
    """Pick the registry model for an image by its content; returns (name, one-line reason)."""
    name, reason, _ = _choose(image)
    return name, reason


def _choose(image: np.ndarray) -> tuple[str, str, str]:
    stats = content_stats(image)
    kind = classify(stats)
    numbers = f"{stats.colour_ratio:.0%} distinct colours, {stats.flat_ratio:.0%} flat, {stats.edge_ratio:.0%} edges"
    described = {
        "anime": "anime/illustration",
        "document": "text or a document",
        "photo": "a photo",
    }[kind]
    return (
        (ANIME_MODEL if kind == "anime" else PHOTO_MODEL),
        f"looks like {described} ({numbers})",
        kind,
    )


# ---------------------------------------------------------------- backends


_LUMA = (0.299, 0.587, 0.114)


class _TorchBackend:
    """A spandrel model on a torch device: fp16 where supported on GPUs, channels_last, inference_mode."""

    def __init__(self, descriptor: Any, device: torch.device) -> None:
        import torch

        self.descriptor = descriptor
        self.device = device
        from studio.devices import half_dtype

        self.dtype = half_dtype(device) if descriptor.supports_half else torch.float32
        descriptor.to(device).to(self.dtype).eval()
        descriptor.model.to(memory_format=torch.channels_last)
        self.name = f"torch-{device.type}-{'fp16' if self.dtype == torch.float16 else 'fp32'}"
        self.grey = descriptor.input_channels == 1

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        """RGB tile in, RGB tile out; greyscale models see the luma (Rec. 601) and their output is repeated."""
        import torch

        with torch.inference_mode():
            if self.grey:
                tile = (tile * tile.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
            x = tile.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
            out = self.descriptor(x).float()
            return out.repeat(1, 3, 1, 1) if self.grey else out


class _NcnnBackend:
    """ncnn CPU inference of a bundled .param/.bin (the files the safetensors copy was converted from)."""

    name = "ncnn-cpu"

    def __init__(self, param: Path, bin_path: Path, threads: int) -> None:
        import ncnn

        from studio.weights.ncnn import network_blobs

        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        self.net.opt.lightmode = True
        if self.net.load_param(str(param)) or self.net.load_model(str(bin_path)):
            raise InputError(f"{param}: ncnn could not load this model")
        self.input_blob, self.output_blob = network_blobs(param)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) float32 numpy in, (1, 3, h*s, w*s) out: no torch on this path."""
        import ncnn

        data = np.ascontiguousarray(tile[0], dtype=np.float32)
        mat = ncnn.Mat(data)  # borrows `data`: keep it referenced until extraction is done
        extractor = self.net.create_extractor()
        extractor.input(self.input_blob, mat)
        status, out = run_interruptible(extractor.extract, self.output_blob)
        if status != 0:
            raise StudioError(f"ncnn inference failed (status {status})")
        return np.clip(np.array(out, dtype=np.float32, copy=True)[None], 0.0, 1.0)


@dataclass
class _Loaded:
    name: str
    path: Path
    arch: str
    scale: int
    backend: Callable[[Any], Any]  # torch tensors, or numpy arrays for ncnn
    backend_name: str
    device: Any  # torch.device; the string "cpu" for ncnn, which needs no torch
    tiling: str  # supported | discouraged | internal


def _threads(settings: Settings) -> int:
    """CPU threads for ncnn: --threads, else every physical core.

    The 1-minute load average is not subtracted: it still counts a run that just ended, and the
    next run then got one thread and took ~1.5x as long (128x128 x4plus on 2 cores: 5.6 s with one
    thread, 3.9 s with two). On a shared machine, --threads sets a smaller share.
    """
    from studio.devices import physical_cores

    return settings.threads or physical_cores()


def _install_extra_arches() -> bool:
    """Register spandrel_extra_arches (non-commercial licences) only when the main registry fails."""
    try:
        import spandrel_extra_arches
    except ImportError:
        return False
    spandrel_extra_arches.install(ignore_duplicates=True)
    return True


_SPANDREL_IDS = {"RRDBNet": "ESRGAN", "SRVGGNetCompact": "Compact"}


def _converted_arch(path: Path) -> tuple[str, int]:
    """(spandrel architecture id, scale) from the metadata studio.weights.ncnn writes."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:  # "np": reading metadata needs no torch
            meta = handle.metadata() or {}
        return _SPANDREL_IDS[meta["studio.arch"]], int(meta["studio.scale"])
    except Exception as exc:  # noqa: BLE001 - missing keys, truncated file, foreign safetensors
        raise UsageError(
            f"{path}: not a studio-converted model ({exc.__class__.__name__}); delete it to convert again"
        ) from None


def _load_spandrel(path: Path) -> Any:
    """Load any spandrel-detected model from .pth (restricted unpickler) or .safetensors; one-line errors."""
    import spandrel

    try:
        try:
            descriptor = spandrel.ModelLoader().load_from_file(path)
        except spandrel.UnsupportedModelError:
            if not _install_extra_arches():
                raise
            descriptor = spandrel.ModelLoader().load_from_file(path)
    except spandrel.UnsupportedModelError:
        raise UsageError(f"{path}: spandrel does not recognise this network; see `studio weights list`") from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip, truncated safetensors, forbidden pickle global...
        raise UsageError(f"{path}: cannot load weights ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UsageError(f"{path}: this is a {descriptor.purpose} model, not a super-resolution model")
    channels = (descriptor.input_channels, descriptor.output_channels)
    if channels not in ((3, 3), (1, 1)):
        raise UsageError(
            f"{path}: the fast engine needs an RGB or greyscale model, this one maps {channels[0]} to "
            f"{channels[1]} channels"
        )
    return descriptor


# ---------------------------------------------------------------- the engine


class FastEngine(Engine):
    """Real-ESRGAN (or any spandrel SR network) in one tiled pass; the fallback of every diffusion engine."""

    name = "fast"
    summary = "Real-ESRGAN and other spandrel networks; the fast path and the fallback"
    auto_rank = 2

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._last: dict[str, Any] = {}  # what the last restore ran (provenance, --alpha model)
        self._models: dict[str, _Loaded] = {}

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
        return Availability(True, "bundled Real-ESRGAN (ncnn on CPU)" if not settings.model else "")

    # -- loading

    def _load(self, name: str) -> _Loaded:
        from studio.devices import device_type, resolve_device

        if name in self._models:
            return self._models[name]
        path = weights.resolve(name, "sr")
        spec = weights.find(name)
        files = weights.offline_files(spec) if spec is not None else None
        backend: _NcnnBackend | _TorchBackend
        device: Any
        if (
            device_type(self.settings.device) == "cpu"
            and spec
            and files
            and path == weights.converted_path(spec)
            and importlib.util.find_spec("ncnn") is not None
        ):
            # the converted copy of bundled ncnn files: run the originals in ncnn, no torch at all
            arch, scale = _converted_arch(path)
            backend, tiling, device = _NcnnBackend(files[0], files[1], _threads(self.settings)), "supported", "cpu"
        else:
            device = resolve_device(self.settings.device)
            descriptor = _load_spandrel(path)
            arch, scale = descriptor.architecture.id, int(descriptor.scale)
            backend, tiling = (
                _TorchBackend(descriptor, device),
                descriptor.tiling.name.lower(),
            )
        loaded = _Loaded(
            spec.name if spec else name,
            path,
            arch,
            scale,
            backend,
            backend.name,
            device,
            tiling,
        )
        self._models[name] = loaded
        return loaded

    # -- tiles

    def auto_tile(self, arch: str, scale: int, device: torch.device | str, tiling: str = "supported") -> int:
        """A tile size that fits in about half the free memory; capped on CPU so memory stays flat."""
        from studio.devices import free_memory_bytes

        if tiling == "internal":
            return 0
        per_input_pixel = _VALUES_PER_OUTPUT_PIXEL.get(arch, _DEFAULT_VALUES_PER_OUTPUT_PIXEL) * 4 * scale * scale
        kind = getattr(device, "type", device)
        if kind in ("cuda", "mps"):
            per_input_pixel //= 2  # fp16
        budget = free_memory_bytes(device) * 0.5
        side = int(math.sqrt(budget / per_input_pixel)) // 16 * 16
        cap = CPU_TILE if kind == "cpu" else GPU_TILE_MAX
        return max(64, min(side, cap))

    def _tile_for(self, models: list[_Loaded]) -> int:
        """--tile, else the smallest automatic tile of the models (an ensemble shares one grid)."""
        if self.settings.tile is not None:
            return self.settings.tile
        tiles = [self.auto_tile(m.arch, m.scale, m.device, m.tiling) for m in models]
        return 0 if all(t == 0 for t in tiles) else min(t for t in tiles if t)

    def _run(
        self,
        models: list[_Loaded],
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
        if len(models) == 1 and models[0].backend_name == _NcnnBackend.name:
            tile = self._tile_for(models)
            out = tiled_apply(models[0].backend, planar, models[0].scale, tile, overlap, progress)
            return np.clip(out[0], 0.0, 1.0).transpose(1, 2, 0), tile
        import torch

        x = torch.from_numpy(planar)
        scale = max(m.scale for m in models)
        fn = models[0].backend if len(models) == 1 else _ensemble_fn(models, blend or [1.0] * len(models), scale)

        def attempt(tile: int) -> torch.Tensor:
            return tiled_apply(fn, x, scale, tile, overlap, progress)

        def stepped_down(old: int, new: int) -> None:
            notice(f"out of memory with {old or 'whole-image'} tiles; retrying with {new}-pixel tiles")

        with torch.inference_mode():
            out, used = retry_smaller_tiles(attempt, self._tile_for(models), models[0].device, on_retry=stepped_down)
            return out[0].clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy(), used

    # -- the contract

    def _pick(self, image: np.ndarray) -> tuple[list[str], str]:
        if self.settings.ensemble:
            return list(self.settings.ensemble), "ensemble chosen with --model"
        if self.settings.model:
            return [self.settings.model], "chosen with --model"
        name, reason, kind = _choose(image)
        if kind == "document":
            warn(f"{reason}: GAN models can invent letter shapes; for fidelity use --engine classical")
        return [name], reason

    def _clean(self, image: np.ndarray, progress: ProgressFn | None) -> np.ndarray:
        """--task jpeg|denoise: the matching SwinIR model at the original size (its window padding
        is spandrel's: reflect to the window multiple, cropped back)."""
        from studio.engines.fast.swinir_tasks import choose_task_model

        choice = choose_task_model(self.settings.task, image, self.source_jpeg_quality)
        loaded = self._load(choice.model)
        if loaded.scale != 1:
            raise UsageError(f"--task {self.settings.task}: '{choice.model}' is a x{loaded.scale} model, expected x1")
        notice(f"--task {self.settings.task}: {choice.reason}")
        cleaned, used = self._run([loaded], image, progress)
        self._last["cleanup"] = {
            "task": self.settings.task,
            "level": choice.level,
            "measured": choice.measured,
            "reason": choice.reason,
            **_pass_record(loaded, used),
        }
        self._last.setdefault("alpha_model", loaded.name)
        return cleaned

    def restore(self, image: np.ndarray, scale: float, progress: ProgressFn | None = None) -> EngineResult:
        _check_image(image)
        out_h, out_w = output_size(image.shape[0], image.shape[1], scale)
        self._last = {}
        if self.settings.task != "sr":
            image = self._clean(image, progress)
            if scale <= 1:  # nothing to enlarge: no second network pass
                if image.shape[:2] != (out_h, out_w):
                    image = resize(image, out_h, out_w, "lanczos")
                return EngineResult(image, self.provenance())
        names, reason = self._pick(image)
        models = [self._load(name) for name in names]
        model_scale = max(m.scale for m in models)
        if scale > model_scale:
            warn(
                f"--scale {scale:g} is more than the model's x{model_scale}: one model pass, then a Lanczos "
                "resize for the rest (a second AI pass would compound artefacts)"
            )
        blend = normalised(self.settings.blend or [1.0] * len(models)) if len(models) > 1 else None
        result, used = self._run(models, image, progress, blend)
        self._last.update(models=models, blend=blend, reason=reason, tile=used, alpha_model=models[0].name)
        if result.shape[:2] != (out_h, out_w):
            result = resize(result, out_h, out_w, "lanczos")
        return EngineResult(result, self.provenance())

    def restore_alpha(
        self, alpha: np.ndarray, scale: float, model: str | None = None, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Upscale an alpha channel with `model` (the colour pass's; grey replicated to RGB), for `--alpha model`."""
        if alpha.ndim != 2:
            raise InputError(f"alpha must be a 2-D array, got shape {alpha.shape}")
        grey = np.repeat(alpha.astype(np.float32)[..., None], 3, axis=2)
        loaded = self._load(self._last.get("alpha_model") or model or self.settings.model or PHOTO_MODEL)
        out_h, out_w = output_size(alpha.shape[0], alpha.shape[1], scale)
        result, _ = self._run([loaded], grey, progress)
        plane = result.mean(axis=2)
        if plane.shape != (out_h, out_w):
            plane = resize(plane, out_h, out_w, "lanczos")
        return plane.astype(np.float32)

    def provenance(self) -> dict[str, Any]:
        """The enlarging pass (one model, or every ensemble member with its weight) and any cleanup pass."""
        info: dict[str, Any] = {"engine": self.name, "task": self.settings.task}
        cleanup = self._last.get("cleanup")
        models: list[_Loaded] = self._last.get("models", [])
        if cleanup is not None:
            info["cleanup"] = cleanup
        if not models:
            if cleanup is not None:  # --scale 1: the cleanup model made the image
                info.update(model=cleanup["model"], weights_sha256=cleanup["weights_sha256"], enlarging=None)
            return info
        records = [_pass_record(m, self._last["tile"]) for m in models]
        info.update(records[0], model_reason=self._last["reason"], tile_overlap=self.settings.tile_overlap)
        if len(models) > 1:
            for record, weight in zip(records, self._last["blend"]):
                record["weight"] = round(weight, 6)
            info.update(
                model=" + ".join(m.name for m in models),
                weights_sha256=[r["weights_sha256"] for r in records],
                ensemble=records,
                blend_space="linear light (sRGB decoded, weighted mean, encoded)",
                model_scale=max(m.scale for m in models),
            )
        return info

    def plan(self, height: int, width: int, scale: float) -> dict[str, Any]:
        """Model, tile grid and rough memory/time, without loading any weights."""
        info = super().plan(height, width, scale)
        name = (
            " + ".join(self.settings.ensemble)
            if self.settings.ensemble
            else self.settings.model or f"{PHOTO_MODEL} or {ANIME_MODEL} (chosen by content)"
        )
        spec = weights.find(self.settings.model or PHOTO_MODEL)
        arch = spec.arch if spec else "unknown"
        model_scale = spec.scale if spec and spec.scale else 4
        from studio.devices import device_type

        device = device_type(self.settings.device)
        tile = self.settings.tile if self.settings.tile is not None else self.auto_tile(arch, model_scale, device)
        grid = tile_grid(height, width, tile, min(self.settings.tile_overlap, tile // 2) if tile else 0)
        side = max(t.height for t in grid), max(t.width for t in grid)
        peak = (
            side[0]
            * side[1]
            * model_scale**2
            * 4
            * _VALUES_PER_OUTPUT_PIXEL.get(arch, _DEFAULT_VALUES_PER_OUTPUT_PIXEL)
        )
        peak += height * width * model_scale**2 * 4 * 4  # the merged output and its weights
        computed = sum(t.height * t.width for t in grid)
        if self.settings.task != "sr":
            measured = "the file's JPEG quality" if self.settings.task == "jpeg" else "the measured noise"
            info["cleanup"] = f"a SwinIR {self.settings.task} model chosen by {measured}, at the original size"
            if scale <= 1:
                name = "none: --scale 1 runs no enlarging pass"
        info.update(
            model=name,
            task=self.settings.task,
            model_scale=model_scale,
            device=device,
            tile=tile,
            tiles=len(grid),
            memory_estimate_mb=round(peak / 2**20),
            extra_resize=scale != model_scale,
        )
        if arch in MACS_PER_INPUT_PIXEL and device == "cpu":
            info["time_estimate_s"] = round(computed * MACS_PER_INPUT_PIXEL[arch] * 2 / CPU_FLOPS, 1)
        return info


def _pass_record(loaded: _Loaded, tile: int) -> dict[str, Any]:
    """What one network pass used, for provenance."""
    return {
        "model": loaded.name,
        "weights_file": str(loaded.path),
        "weights_sha256": weights.file_sha256(loaded.path),
        "arch": loaded.arch,
        "model_scale": loaded.scale,
        "backend": loaded.backend_name,
        "tile": tile,
    }


def _ensemble_fn(models: list[_Loaded], blend: list[float], scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One tile through every model, each brought to `scale` (bicubic for smaller models), blended in
    linear light: so the ensemble shares one tile grid and one merge."""

    def blended(tile: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        size = (tile.shape[-2] * scale, tile.shape[-1] * scale)
        outputs = []
        for loaded in models:
            out = loaded.backend(tile).float().to(tile.device)
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bicubic", align_corners=False, antialias=True)
            outputs.append(out.clamp(0.0, 1.0))
        return blend_linear(outputs, blend)

    return blended


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        raise InputError(f"fast engine expects (H, W, 3) float32, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 2:
        raise InputError(f"image of {image.shape[1]}x{image.shape[0]} px is too small for a network")
