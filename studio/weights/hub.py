"""Hugging Face hub snapshots: what a download fetches, and the local cache for offline runs."""

from __future__ import annotations

from pathlib import Path

from studio.errors import WeightsMissing
from studio.weights.catalog import WeightSpec


def diffusers_allow_patterns(variant: str | None = None) -> list[str]:
    """What a diffusers pipeline download needs: indexes, configs, tokenizer files and one set of weights
    (safetensors; the fp16 variant when `variant` says so), never the repo's other checkpoints (the x4
    upscaler's repo also holds a 3.5 GB .ckpt and .bin copies of every component)."""
    suffix = f".{variant}" if variant else ""
    weights = [
        f"{folder}{stem}{suffix}{shard}.safetensors"
        for folder in ("", "*/")
        for stem in ("diffusion_pytorch_model", "model")
        for shard in ("", "-*")
    ]
    return ["*.json", "*.txt", "*/*.json", "*/*.txt", "*/*.model", *weights]


def hub_snapshot(spec: WeightSpec, download: bool) -> Path:
    """A local snapshot folder of a hub repo; with download=False only the local cache is used."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = diffusers_allow_patterns() if spec.kind == "diffusion" else None
    try:
        return Path(snapshot_download(spec.hub_repo, local_files_only=not download, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        if download:
            raise WeightsMissing(
                f"cannot download {spec.hub_repo} for '{spec.name}': the hub is not reachable"
            ) from None
        raise WeightsMissing(
            f"weights '{spec.name}' ({spec.hub_repo}) are not downloaded; run `studio weights pull {spec.name}`"
        ) from None
    except OSError as exc:
        raise WeightsMissing(f"cannot download {spec.hub_repo} for '{spec.name}': {exc}") from None
