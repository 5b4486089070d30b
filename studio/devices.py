"""Device and dtype choice, free-memory probe, out-of-memory detection. torch is imported lazily."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from studio.errors import DeviceUnavailable

if TYPE_CHECKING:
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device that is missing is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceUnavailable(f"--device {name!r}: not a device name (use auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailable(f"--device {name}: MPS is not available here; use --device cpu")
    return device


GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
"""Device nodes of the NVIDIA, AMD (ROCm) and WSL GPU drivers: without any, Linux has no usable GPU."""


def cpu_only_machine() -> bool:
    """True when no GPU driver is visible (Linux without GPU device nodes), known without importing torch."""
    return sys.platform.startswith("linux") and not any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def device_type(name: str = "auto") -> str:
    """'cpu', 'cuda' or 'mps' for a --device value; on a CPU-only machine without importing torch (~2 s)."""
    if name == "cpu" or (name == "auto" and cpu_only_machine()):
        return "cpu"
    return resolve_device(name).type


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads share a core's arithmetic units)."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(physical or usable, usable))


def has_gpu() -> bool:
    """True when CUDA or MPS is usable; cheap enough for `studio engines`."""
    if cpu_only_machine():
        return False
    import torch

    return torch.cuda.is_available() or bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def half_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA/MPS (bf16 where the GPU supports it natively is chosen by callers), fp32 on CPU."""
    import torch

    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def free_memory_bytes(device: torch.device | str) -> int:
    """Free memory on the device; for CPU, available system RAM (read without importing torch)."""
    if getattr(device, "type", device) == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures, however torch spells them."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def empty_cache(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory, before retrying with smaller tiles."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
