"""Weights files as users have them (.safetensors, or a torch checkpoint: .ckpt/.pt/.pth/.bin), read lean.

`read_index(path)` gives every key's shape and dtype without reading a tensor: the safetensors header (checked
by safetensors to cover the whole file, so a truncated file fails here), or the pickle of a torch zip
checkpoint unpickled with `weights_only=True` onto memory-mapped storages (no data read, no code run). A
`--dry-run` checks a file's keys and shapes from this index through the same code a real load uses, by
`meta_state(index)`: tensors on torch's meta device with the file's shapes and dtypes.

`open_state(path)` gives the tensors themselves, memory-mapped: nothing is read until a loader touches a
tensor, so a loader that converts them one at a time into its modules holds about one model in memory, not
the file plus the model. Both unwrap a Lightning checkpoint's 'state_dict'. Errors are one line naming the file.

API (used by the stablesr, supir and onestep engines):
    read_index(path) -> {key: TensorInfo(shape, dtype)}
    open_state(path) -> {key: torch.Tensor (memory-mapped, read-only in spirit: copy before writing)}
    meta_state(index) -> {key: meta tensor of that shape and dtype}
    index_bytes(index) -> bytes the tensors take in the file's own dtypes
"""

from __future__ import annotations

import functools
import math
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import ModelLoadError, WeightsMissing

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class TensorInfo:
    """What the index says of one tensor: its shape and dtype (a torch.dtype)."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_index(path: str | Path) -> dict[str, TensorInfo]:
    """Every key's shape and dtype, read from the file's header or pickle, no tensor data read. Remembered
    per file (path, size and modification time), as a run asks several times (kind, selection, checks)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise WeightsMissing(f"{file}: weights file not found")
    stat = file.stat()
    return dict(_cached_index(file, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _cached_index(file: Path, size: int, mtime_ns: int) -> dict[str, TensorInfo]:
    if file.suffix.lower() == SAFETENSORS_SUFFIX:
        return _guarded(file, lambda: _safetensors_index(file))
    return {key: TensorInfo(tuple(value.shape), value.dtype) for key, value in open_state(file).items()}


def open_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors, memory-mapped (pages are read when a tensor is first used)."""
    file = Path(path)
    if file.suffix.lower() == SAFETENSORS_SUFFIX:
        return _guarded(file, lambda: _safetensors_mapped(file))
    return _guarded(file, lambda: _torch_state(file))


def meta_state(index: dict[str, TensorInfo]) -> dict[str, torch.Tensor]:
    """Meta-device stand-ins for the file's tensors: loaders run on them to check a file without its data."""
    import torch

    return {key: torch.empty(info.shape, dtype=info.dtype, device="meta") for key, info in index.items()}


def index_bytes(index: dict[str, TensorInfo]) -> int:
    return sum(info.nbytes for info in index.values())


def _guarded(file: Path, read: Any) -> Any:
    try:
        return read()
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else type(exc).__name__
        raise ModelLoadError(f"cannot read {file}: {first}") from exc


def _safetensors_index(file: Path) -> dict[str, TensorInfo]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as opened:  # validates the header against the file's size
        index = {}
        for key in opened.keys():
            piece = opened.get_slice(key)
            index[key] = TensorInfo(tuple(piece.get_shape()), _safetensors_dtype(piece.get_dtype()))
    return index


def _safetensors_dtype(name: str) -> torch.dtype:
    import torch

    names = {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
        "F8_E4M3": torch.float8_e4m3fn,
        "F8_E5M2": torch.float8_e5m2,
    }
    if name not in names:
        raise ValueError(f"tensor dtype {name} is not supported")
    return names[name]


def _safetensors_mapped(file: Path) -> dict[str, torch.Tensor]:
    """Tensors viewing a private (copy-on-write) map of the file, at the offsets the header gives."""
    import json
    import struct

    import torch

    index = _safetensors_index(file)  # the checks first: a truncated or malformed file fails here
    with open(file, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    start = 8 + header_size
    state = {}
    for key, info in index.items():
        begin, _ = header[key]["data_offsets"]
        count = math.prod(info.shape)
        if count == 0:
            state[key] = torch.empty(info.shape, dtype=info.dtype)
            continue
        flat = torch.frombuffer(mapped, dtype=info.dtype, count=count, offset=start + begin)
        state[key] = flat.reshape(info.shape)
    return state


def _torch_state(file: Path) -> dict[str, torch.Tensor]:
    import pickle
    import zipfile

    import torch

    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        if not zipfile.is_zipfile(file):
            try:  # the legacy (pre-zip) torch format cannot be memory-mapped
                loaded = torch.load(file, map_location="cpu", weights_only=True)
            except (RuntimeError, pickle.UnpicklingError, EOFError):
                raise ValueError(
                    "not a complete torch checkpoint or safetensors file (truncated, or another kind of file)"
                ) from exc
        elif isinstance(exc, pickle.UnpicklingError):
            raise ValueError(
                "it holds Python objects besides tensors; refused, since loading them would run code from the file"
            ) from exc
        else:
            raise
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise TypeError(f"holds a {type(loaded).__name__}, not a state dict")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"key '{key}' holds a {type(value).__name__}, not a tensor")
    return state
