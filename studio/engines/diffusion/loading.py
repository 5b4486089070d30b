"""Where diffusion weights come from, whether they are here without network, and how they are loaded.

`settings.model` is a hub repo id (resolved through the Hugging Face cache, honouring HF_HOME and
HF_HUB_OFFLINE), a local diffusers folder (with model_index.json), or a single-file checkpoint
(.safetensors/.ckpt) which diffusers converts using the hub configs of the architecture.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import WeightsMissing
from studio.messages import notice

if TYPE_CHECKING:
    import torch

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class ModelSource:
    """A resolved `--model` value: kind is 'hub', 'folder' or 'file'; `ref` is the repo id or path."""

    kind: str
    ref: str
    revision: str | None = None

    def describe(self) -> str:
        return f"{self.ref}@{self.revision}" if self.revision else self.ref


def resolve_source(model: str) -> ModelSource:
    """Classify a `--model` value without touching the network. `owner/name@rev` pins a hub revision."""
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSource("folder", str(path.resolve()))
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        return ModelSource("file", str(path.resolve()))
    repo, _, revision = model.partition("@")
    if model.startswith((".", "/", "~")) or repo.count("/") != 1 or path.exists():
        raise WeightsMissing(
            f"--model {model}: no such diffusers folder or checkpoint file (a hub id looks like 'owner/name')"
        )
    return ModelSource("hub", repo, revision or None)


def missing_reason(source: ModelSource, weights_name: str) -> str | None:
    """Why `source` cannot be loaded offline right now (None: it can). Cheap: file checks only."""
    hint = f"run `studio weights pull {weights_name}` or pass --model FOLDER"
    if source.kind == "folder":
        if not (Path(source.ref) / "model_index.json").is_file():
            return f"{source.ref}: not a diffusers folder (no model_index.json); {hint}"
        return None
    if source.kind == "file":
        return None if Path(source.ref).is_file() else f"{source.ref}: checkpoint file not found; {hint}"
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.ref, "model_index.json", revision=source.revision)
    if not isinstance(found, str):
        return f"{source.describe()} is not in the Hugging Face cache; {hint}"
    for name in ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(source.ref, name, revision=source.revision), str):
            return None
    return f"{source.describe()}: the cache holds its index but not the UNet weights; {hint}"


def snapshot_revision(source: ModelSource) -> str | None:
    """The commit hash of the cached hub snapshot (the folder name under snapshots/), if known."""
    if source.kind != "hub":
        return source.revision
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.ref, "model_index.json", revision=source.revision)
    return Path(found).parent.name if isinstance(found, str) else source.revision


def load_pipeline(pipeline_cls: Any, source: ModelSource, weights_name: str, dtype: torch.dtype) -> Any:
    """Load a diffusers pipeline from `source`, turning every 'cannot get the weights' into WeightsMissing.

    The pipeline object is only a container of components here: engines run their own loop on them.
    """
    hint = f"run `studio weights pull {weights_name}` or pass --model FOLDER"
    if source.kind != "hub" and (reason := missing_reason(source, weights_name)):
        raise WeightsMissing(reason)  # hub ids are checked by from_pretrained itself (it may download)
    kwargs: dict[str, Any] = {"dtype": dtype}
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # studio says it in one line; no "couldn't connect" chatter
    diffusers_logging.disable_progress_bar()  # studio shows its own progress
    transformers_logging.disable_progress_bar()
    try:
        if source.kind == "file":
            return pipeline_cls.from_single_file(source.ref, local_files_only=offline, **kwargs)
        if source.kind == "hub":
            kwargs.update(revision=source.revision, local_files_only=offline)
        return pipeline_cls.from_pretrained(source.ref, **kwargs)
    except Exception as exc:  # hub, file-system and conversion errors all mean "no usable weights"
        if not _is_weights_problem(exc):
            raise
        if source.kind == "hub" and (reason := missing_reason(source, weights_name)):
            raise WeightsMissing(f"{reason.split(';')[0]} and could not be downloaded; {hint}") from None
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsMissing(f"cannot load {source.describe()} ({first_line[:160]}); {hint}") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def _is_weights_problem(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(exc, OSError | HfHubHTTPError | ValueError | KeyError)


def choose_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU; fp16 on MPS; on CUDA bf16 where the GPU runs it natively (no fp16 overflow in the
    x4 UNet's attention), else fp16."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def enable_fast_attention(unet: Any, device: torch.device) -> str:
    """xformers on CUDA when installed, else torch's scaled-dot-product attention (diffusers' default)."""
    if device.type == "cuda" and importlib.util.find_spec("xformers") is not None:
        try:
            unet.enable_xformers_memory_efficient_attention()
        except (RuntimeError, ValueError, ImportError) as exc:  # installed but not built for this GPU/torch
            notice(f"xformers is installed but unusable here ({exc}); using torch SDPA attention")
        else:
            return "xformers"
    return "sdpa"
