"""Device and dtype choice, free-memory probe, and what to do when memory runs out. torch is imported lazily.

Every engine asks here for its working dtype (`compute_dtype`) and runs its work through the one
out-of-memory ladder (`run_shrinking`): the engine lists its attempts (smaller tiles each), this layer
frees the cache between them, says what happened and gives up with one clear error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from studio.errors import DeviceUnavailable, OutOfMemory
from studio.messages import notice

if TYPE_CHECKING:
    import torch

Attempt = TypeVar("Attempt")
Result = TypeVar("Result")


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


def compute_dtype(device: torch.device, requested: str | None = None, bf16: bool = True) -> torch.dtype:
    """The working dtype: `requested` (fp16, bf16, fp32: --dtype) when given; else fp32 on CPU, fp16 on MPS,
    and on CUDA bf16 where the chosen GPU runs it natively (no fp16 overflow in attention; `bf16=False` for
    networks measured in fp16), else fp16. On a CPU a half dtype its instructions do not run natively is
    emulated at a small fraction of fp32's speed, so `cpu_dtype` picks what the processor accelerates."""
    import torch

    names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if device.type == "cpu":
        chosen, why = cpu_dtype(requested, cpu_flags())
        if requested is not None and chosen != requested:
            notice(f"--dtype {requested}: {why}")
        return names[chosen]
    if requested is not None:
        return names[requested]
    if device.type == "cuda":
        return torch.bfloat16 if bf16 and native_bf16(device) else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})
"""CPU features with bf16 arithmetic: x86 AMX and AVX-512 BF16 (/proc/cpuinfo flags), Arm's BF16 (Features)."""
CPU_FP16_FLAGS = frozenset({"amx_fp16", "avx512_fp16"})
"""x86 features with fp16 arithmetic; without them torch emulates fp16 (a 3x3 convolution: 0.11 GFLOP/s against
7.0 for fp32 and 9.3 for bf16 on an AVX512-BF16 CPU, benchmarks/bench_cpu_dtype.py)."""


def cpu_dtype(requested: str | None, flags: frozenset[str]) -> tuple[str, str]:
    """(dtype name, why) for a CPU with these feature flags: fp32 unless a half dtype is asked for and the
    processor runs it natively; fp16 asked for on a CPU with bf16 but no fp16 gets bf16 (same memory)."""
    has_bf16, has_fp16 = bool(flags & CPU_BF16_FLAGS), bool(flags & CPU_FP16_FLAGS)
    if requested in (None, "fp32"):
        extra = "; it also runs bf16 natively (--dtype bf16 where an engine takes it)" if has_bf16 else ""
        return "fp32", f"fp32 on the CPU: exact, and natively fast{extra}"
    if requested == "bf16" and has_bf16:
        return "bf16", "bf16: this CPU runs it natively"
    if requested == "fp16" and has_fp16:
        return "fp16", "fp16: this CPU runs it natively"
    if requested == "fp16" and has_bf16:
        return "bf16", "this CPU has no fp16 arithmetic but native bf16; running bf16 (same memory, fast)"
    return "fp32", f"this CPU has no native {requested} arithmetic (emulated: tens of times slower); running fp32"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo 'flags' on x86, 'Features' on Arm); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def describe_dtype(device: torch.device, requested: str | None = None, bf16: bool = True) -> str:
    """The dtype `compute_dtype` will choose and why, for the plan (--dry-run)."""
    if device.type == "cpu":
        chosen, why = cpu_dtype(requested, cpu_flags())
        return why if chosen == (requested or "fp32") else f"{chosen} ({why})"
    dtype = compute_dtype(device, requested, bf16)
    return str(dtype).replace("torch.", "") + f" on {device.type}"


def native_bf16(device: torch.device) -> bool:
    """bf16 in hardware on this CUDA device (compute capability 8.0, Ampere, or newer), not emulated.

    `torch.cuda.is_bf16_supported()` asks about the current device and may count emulation, which runs
    bf16 far slower than fp16; the capability of the chosen device answers the real question.
    """
    import torch

    return torch.cuda.get_device_capability(device)[0] >= 8


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


def empty_cache(device: torch.device | str) -> None:
    """Give cached blocks back after an out-of-memory, before retrying with smaller tiles."""
    import gc

    gc.collect()
    kind = getattr(device, "type", device)
    if kind not in ("cuda", "mps"):
        return
    import torch

    if kind == "cuda":
        torch.cuda.empty_cache()
    else:
        torch.mps.empty_cache()


def run_shrinking(
    run: Callable[[Attempt], Result],
    attempts: Sequence[Attempt],
    device: torch.device | str,
    name: str,
    describe: Callable[[Attempt], str],
    advice: str,
    on_retry: Callable[[Attempt, Attempt], None] | None = None,
) -> tuple[Result, Attempt, list[str]]:
    """`run(attempt)` on each attempt (smaller tiles each) until one fits in memory: (result, the attempt
    that ran, one note per retry). Each out-of-memory frees the cache and says so; when the last attempt
    runs out too, `OutOfMemory` (a StudioError: the runner falls back) names it and gives `advice`."""
    notes: list[str] = []
    for index, attempt in enumerate(attempts):
        try:
            return run(attempt), attempt, notes
        except Exception as exc:  # torch.OutOfMemoryError, MemoryError or a RuntimeError saying so
            if not is_out_of_memory(exc):
                raise
        # outside the except block, so the failed attempt's frames (and tensors) are already released
        empty_cache(device)
        if index + 1 == len(attempts):
            raise OutOfMemory(f"{name} ran out of memory on {device} even with {describe(attempt)}; {advice}")
        following = attempts[index + 1]
        note = f"{name} ran out of memory on {device} with {describe(attempt)}; retried with {describe(following)}"
        notice(note)
        notes.append(note)
        if on_retry is not None:
            on_retry(attempt, following)
    raise ValueError("no attempts given")
