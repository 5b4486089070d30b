"""The fast engine's backends: a spandrel network in torch, or bundled ncnn files in ncnn itself.

On CUDA/MPS the spandrel model runs in torch (fp16 where the architecture allows, channels_last,
inference_mode); on CPU, models that came from bundled ncnn files run in ncnn (when the `ncnn` package is
installed, else in torch), the fastest CPU runtime measured for them (benchmarks/bench_fast.py) and by
definition pixel-identical to ncnn's reference output; that path imports no torch at all
(benchmarks/bench_fast_e2e.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio import weights
from studio.devices import compute_dtype, device_type, physical_cores, resolve_device
from studio.engines.fast.openmp import choose_spinning
from studio.errors import InputError, StudioError, UsageError
from studio.native import run_interruptible
from studio.ops.blend import blend_linear
from studio.settings import Settings
from studio.weights.ncnn import network_blobs

if TYPE_CHECKING:
    import torch

_LUMA = (0.299, 0.587, 0.114)


class TorchBackend:
    """A spandrel model on a torch device: fp16 where supported on GPUs, channels_last, inference_mode."""

    def __init__(self, descriptor: Any, device: torch.device) -> None:
        import torch

        self.descriptor = descriptor
        self.device = device
        # fp16, not bf16, on every GPU: the spandrel networks were measured (and agree with the CPU) in fp16
        self.dtype = compute_dtype(device, bf16=False) if descriptor.supports_half else torch.float32
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


class NcnnBackend:
    """ncnn CPU inference of a bundled .param/.bin (the files the safetensors copy was converted from)."""

    name = "ncnn-cpu"

    def __init__(self, param: Path, bin_path: Path, threads: int) -> None:
        # loaded on the thread that will run the tiles: one OpenMP team in the process (see studio.native)
        self.net = run_interruptible(_load_net, param, bin_path, threads)
        self.input_blob, self.output_blob = network_blobs(param)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) float32 numpy in, (1, 3, h*s, w*s) out: no torch on this path."""
        import ncnn

        data = np.ascontiguousarray(tile[0], dtype=np.float32)
        net = self.net

        def extract() -> tuple[int, Any]:
            # runs in a worker that Ctrl-C may abandon: it holds the net, the input and the array the Mat
            # borrows, so freeing the engine after an interruption cannot pull memory from under ncnn
            mat = ncnn.Mat(data)
            extractor = net.create_extractor()
            extractor.input(self.input_blob, mat)
            return extractor.extract(self.output_blob)

        status, out = run_interruptible(extract)
        if status != 0:
            raise StudioError(f"ncnn inference failed (status {status})")
        return np.clip(np.array(out, dtype=np.float32, copy=True)[None], 0.0, 1.0)


def _load_net(param: Path, bin_path: Path, threads: int) -> Any:
    choose_spinning()  # before libgomp starts with ncnn
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.opt.lightmode = True
    if net.load_param(str(param)) or net.load_model(str(bin_path)):
        raise InputError(f"{param}: ncnn could not load this model")
    return net


@dataclass
class Loaded:
    name: str
    path: Path
    arch: str
    scale: int
    backend: Callable[[Any], Any]  # torch tensors, or numpy arrays for ncnn
    backend_name: str
    device: Any  # torch.device; the string "cpu" for ncnn, which needs no torch
    tiling: str  # supported | discouraged | internal


def threads(settings: Settings) -> int:
    """CPU threads for ncnn: --threads, else every physical core.

    The 1-minute load average is not subtracted: it still counts a run that just ended, and the
    next run then got one thread and took ~1.5x as long (128x128 x4plus on 2 cores: 5.6 s with one
    thread, 3.9 s with two). On a shared machine, --threads sets a smaller share.
    """
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


def converted_arch(path: Path) -> tuple[str, int]:
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


def load_spandrel(path: Path) -> Any:
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


def load_model(name: str, settings: Settings) -> Loaded:
    """A registry name or weights file, ready to run: on a CPU the bundled ncnn files in ncnn itself (when
    the `ncnn` package is here: no torch at all), otherwise the spandrel network in torch."""
    path = weights.resolve(name, "sr")
    spec = weights.find(name)
    files = weights.offline_files(spec) if spec is not None else None
    backend: NcnnBackend | TorchBackend
    device: Any
    if (
        device_type(settings.device) == "cpu"
        and spec
        and files
        and path == weights.converted_path(spec)
        and importlib.util.find_spec("ncnn") is not None
    ):
        # the converted copy of bundled ncnn files: run the originals in ncnn, no torch at all
        arch, scale = converted_arch(path)
        backend, tiling, device = NcnnBackend(files[0], files[1], threads(settings)), "supported", "cpu"
    else:
        device = resolve_device(settings.device)
        descriptor = load_spandrel(path)
        arch, scale = descriptor.architecture.id, int(descriptor.scale)
        backend, tiling = TorchBackend(descriptor, device), descriptor.tiling.name.lower()
    return Loaded(spec.name if spec else name, path, arch, scale, backend, backend.name, device, tiling)


def pass_record(loaded: Loaded, tile: int) -> dict[str, Any]:
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


def ensemble_fn(models: list[Loaded], blend: list[float], scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One tile through every model, each brought to `scale` (bicubic for smaller models), blended in
    linear light: so the ensemble shares one tile grid and one merge. Members may mix backends (ncnn
    works on numpy, torch on tensors)."""

    def blended(tile: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        size = (tile.shape[-2] * scale, tile.shape[-1] * scale)
        outputs = []
        for loaded in models:
            if loaded.backend_name == NcnnBackend.name:  # ncnn reads and returns numpy: bridge it
                out = torch.from_numpy(loaded.backend(tile.cpu().numpy()))
            else:
                out = loaded.backend(tile)
            out = out.float().to(tile.device)
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bicubic", align_corners=False, antialias=True)
            outputs.append(out.clamp(0.0, 1.0))
        return blend_linear(outputs, blend)

    return blended
