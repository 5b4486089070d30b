"""What a training run keeps between steps and on disk: the EMA generator, checkpoints, the result file.

Checkpoints hold every state the next step reads (generator, discriminator, both optimisers, EMA, step),
so `--resume` continues exactly; they are read with `weights_only=True` (no pickled code runs) and written
atomically, and only the newest two are kept. The result is the EMA generator as safetensors, with its
architecture, scale and training provenance in the metadata.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.errors import InputError
from studio.io import atomic

CHECKPOINT_PATTERN = re.compile(r"step-(\d+)\.pt$")
KEEP_CHECKPOINTS = 2


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter; buffers are copied."""
    for mine, theirs in zip(ema.parameters(), model.parameters()):
        mine.lerp_(theirs.detach().to(mine.dtype), 1.0 - decay)
    for mine, theirs in zip(ema.buffers(), model.buffers()):
        mine.copy_(theirs)


def checkpoint_folder(output: Path) -> Path:
    """Checkpoints of the run that writes `output` live beside it: `NAME.checkpoints/`."""
    return output.with_name(output.stem + ".checkpoints")


def latest_checkpoint(output: Path) -> Path | None:
    folder = checkpoint_folder(output)
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := CHECKPOINT_PATTERN.search(p.name))]
    return max(found)[1] if found else None


def save_checkpoint(output: Path, step: int, parts: dict[str, Any], fingerprint: dict[str, Any]) -> Path:
    """Write step-NNNNNNN.pt atomically, then drop all but the newest KEEP_CHECKPOINTS."""
    folder = checkpoint_folder(output)
    path = folder / f"step-{step:07d}.pt"
    with atomic(path) as temp:
        torch.save({"step": step, "fingerprint": json.dumps(fingerprint, sort_keys=True), **parts}, temp)
    older = sorted(p for p in folder.glob("step-*.pt") if CHECKPOINT_PATTERN.search(p.name) and p != path)
    for stale in older[: max(0, len(older) - (KEEP_CHECKPOINTS - 1))]:
        stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's states; refused in one line when it came from other options or is damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, foreign pickle: one line either way
        raise InputError(
            f"{path}: cannot read this checkpoint ({exc.__class__.__name__}); delete it to go back one"
        ) from None
    theirs = json.loads(state.get("fingerprint", "{}"))
    mine = json.loads(json.dumps(fingerprint, sort_keys=True))
    changed = sorted(key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key))
    if changed:
        raise InputError(
            f"{path}: made with other training options ({', '.join(changed)}); rerun with the same options, "
            "or start afresh without --resume and another -o"
        )
    return state


def export(model: nn.Module, output: Path, arch: str, scale: int, provenance: dict[str, Any]) -> None:
    """The generator's weights as safetensors, readable by spandrel, with the training record in the metadata."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().float().contiguous().cpu() for key, value in model.state_dict().items()}
    metadata = {"studio.architecture": arch, "studio.scale": str(scale), "studio.training": json.dumps(provenance)}
    with atomic(output) as temp:
        save_file(tensors, str(temp), metadata=metadata)
