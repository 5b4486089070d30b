"""Finding, reading and checking S3Diff's two files: the weights (`s3diff.pkl`) and the estimator (`de_net.pth`).

Reading never runs code from a pickle (`torch.load(weights_only=True)`; a file that needs more is refused in
one line) and memory-maps the tensors, so a check reads only the pickle and the zip index: `--dry-run` checks
every key and shape of both files exactly as the run does, without reading the weights.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import weights
from studio.engines.onestep.s3diff.keys import (
    ESTIMATOR_PREFIX,
    LayoutError,
    studio_to_official_name,
    to_studio,
)
from studio.errors import ModelLoadError, UsageError, WeightsMissing
from studio.settings import project_root

if TYPE_CHECKING:
    from studio.diffusion.loading import ModelSource

BASE_NAME = "sd-turbo"
WEIGHTS_NAME = "s3diff-lora"
ESTIMATOR_NAME = "s3diff-denet"
COMPOSITE_NAME = "s3diff"
ESTIMATOR_FILENAME = "de_net.pth"
DEFAULT_ARCHITECTURE = project_root() / "configs" / "stablesr"
"""SD-Turbo has SD 2.1's UNet and VAE: their configs, used when no base is given to compare against."""


@dataclass(frozen=True)
class S3DiffFiles:
    weights: Path
    estimator: Path


@dataclass(frozen=True)
class S3DiffFile:
    """Both files read (tensors memory-mapped), under studio's names; the LoRA config entries apart."""

    files: S3DiffFiles
    tensors: dict[str, Any]
    rank_unet: int
    rank_vae: int
    unet_targets: Any
    vae_targets: Any


def locate(adapter: str) -> S3DiffFiles:
    """`adapter` -> both files: 'w.pkl,de_net.pth' (either order, told apart by their keys), 'w.pkl' alone
    (the estimator next to it, else the registry's), or a registry name (the composite expands)."""
    parts = [part.strip() for part in adapter.split(",") if part.strip()]
    if len(parts) == 1 and (spec := weights.find(parts[0])) is not None and weights.composite_members(spec):
        parts = weights.composite_members(spec)[1:]
    paths = [weights.resolve(part, "") for part in parts]
    if not 1 <= len(paths) <= 2:
        raise UsageError(f"--adapter {adapter}: expected the S3Diff weights file and optionally {ESTIMATOR_FILENAME}")
    estimators = [path for path in paths if _is_estimator(path)]
    others = [path for path in paths if path not in estimators]
    if len(others) != 1 or len(estimators) > 1:
        raise UsageError(
            f"--adapter {adapter}: expected one S3Diff weights file (s3diff.pkl) and at most one estimator "
            f"({ESTIMATOR_FILENAME}, keys conv_first.*)"
        )
    if estimators:
        return S3DiffFiles(others[0], estimators[0])
    beside = others[0].with_name(ESTIMATOR_FILENAME)
    return S3DiffFiles(others[0], beside if beside.is_file() else weights.resolve(ESTIMATOR_NAME, ""))


def _is_estimator(path: Path) -> bool:
    state = read_checkpoint(path)
    return isinstance(state, dict) and "conv_first.0.weight" in state


def read_checkpoint(path: Path) -> Any:
    """A torch-saved object read without running code, its tensors memory-mapped (read when used)."""
    import torch

    if not path.is_file():
        raise WeightsMissing(f"{path}: weights file not found; run `studio weights pull {COMPOSITE_NAME}`")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ModelLoadError(
            f"{path}: refused: loading it would run code from the pickle, not only read tensors ({first})"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {path}: {str(exc).strip().splitlines()[0][:200] if str(exc) else exc!r}"
        ) from exc


def read(files: S3DiffFiles) -> S3DiffFile:
    """Both files under studio's names; `ModelLoadError` naming the entry that does not fit S3Diff's layout."""
    official = read_checkpoint(files.weights)
    if not isinstance(official, dict):
        raise ModelLoadError(f"{files.weights}: holds a {type(official).__name__}, not S3Diff's dict of entries")
    try:
        tensors = to_studio(official)
    except LayoutError as exc:
        raise ModelLoadError(f"{files.weights}: {exc}; not an S3Diff weights file (the authors' s3diff.pkl)") from exc
    ranks = {name: official[name] for name in ("rank_unet", "rank_vae")}
    for name, rank in ranks.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ModelLoadError(f"{files.weights}: '{name}' is {rank!r}, expected a positive integer")
    for name in ("unet_lora_target_modules", "vae_lora_target_modules"):
        targets = official[name]
        if not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)
        ):
            raise ModelLoadError(f"{files.weights}: '{name}' is {type(targets).__name__}, expected PEFT target modules")
    estimator = read_checkpoint(files.estimator)
    if not isinstance(estimator, dict) or "conv_first.0.weight" not in estimator:
        raise ModelLoadError(f"{files.estimator}: not S3Diff's degradation estimator (no 'conv_first.0.weight')")
    tensors.update({ESTIMATOR_PREFIX + key: value for key, value in estimator.items()})
    return S3DiffFile(
        files,
        tensors,
        ranks["rank_unet"],
        ranks["rank_vae"],
        official["unet_lora_target_modules"],
        official["vae_lora_target_modules"],
    )


def base_configs(base: ModelSource | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base's UNet and VAE configs (two small JSON reads); SD-Turbo's architecture without a base."""
    if base is not None and base.kind == "folder":
        folder = Path(base.ref)
        return _json(folder / "unet" / "config.json"), _json(folder / "vae" / "config.json")
    if base is not None and base.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        found = [
            try_to_load_from_cache(base.ref, f"{part}/config.json", revision=base.revision) for part in ("unet", "vae")
        ]
        if all(isinstance(path, str) for path in found):
            return _json(Path(found[0])), _json(Path(found[1]))
    return _json(DEFAULT_ARCHITECTURE / "unet.json"), _json(DEFAULT_ARCHITECTURE / "vae.json")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the base's config ({exc})") from exc


def check_fit(loaded: S3DiffFile, expected: dict[str, tuple[int, ...]]) -> None:
    """Every expected key present with its shape and no key left over; else one line naming the first misfit
    by its name in the file."""
    tensors = loaded.tensors
    for key, shape in expected.items():
        where = loaded.files.estimator if key.startswith(ESTIMATOR_PREFIX) else loaded.files.weights
        if key not in tensors:
            raise ModelLoadError(f"{where}: missing '{studio_to_official_name(key)}'; {_hint(key)}")
        if tuple(tensors[key].shape) != shape:
            raise ModelLoadError(
                f"{where}: '{studio_to_official_name(key)}' has shape {tuple(tensors[key].shape)}, expected {shape}; "
                f"{_hint(key)}"
            )
    if extra := sorted(set(tensors) - set(expected)):
        where = loaded.files.estimator if extra[0].startswith(ESTIMATOR_PREFIX) else loaded.files.weights
        name = studio_to_official_name(extra[0])
        raise ModelLoadError(f"{where}: '{name}' (and {len(extra) - 1} more) fits no parameter; {_hint(extra[0])}")


def _hint(key: str) -> str:
    if key.startswith(("unet.", "vae.")):
        return "the file was made for another base than this one (S3Diff's is SD-Turbo)"
    return "a damaged or foreign file"
