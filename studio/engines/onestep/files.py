"""Reading one-step methods' weights files (torch-saved plain dicts) safely, with one-line verdicts.

`torch.load(weights_only=True)` only rebuilds tensors, containers and plain values: a file whose
unpickling would run other code is refused, never executed. Tensors are memory-mapped when only the
structure is asked for (--dry-run and the method's check read no tensor data).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from studio.errors import ModelLoadError, WeightsMissing


def read_torch_file(path: str | Path, what: str, mmap: bool = True) -> Any:
    """The unpickled object; WeightsMissing when absent, ModelLoadError (one line) when unreadable or unsafe."""
    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsMissing(f"{file}: {what} not found")
    try:
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):
                raise
            return torch.load(file, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{file}: refused: unpickling it would run code (studio reads only tensors and plain values)"
        ) from None
    except Exception as exc:
        first = str(exc).strip().split(". ")[0].splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot read {file} ({first}): truncated, or not a torch-saved file") from None


def top_level_keys(path: str | Path, what: str) -> list[str]:
    """The keys of a torch-saved dict (tensors not read); [] for anything else."""
    loaded = read_torch_file(path, what)
    return [str(key) for key in loaded] if isinstance(loaded, dict) else []
