"""Where diffusion weights come from, whether they are here without network, and how they are loaded.

`settings.model` is a hub repo id (resolved through the Hugging Face cache, honouring HF_HOME and
HF_HUB_OFFLINE), a local diffusers folder (with model_index.json), or a single-file checkpoint
(.safetensors/.ckpt) which diffusers converts using the hub configs of the architecture. The same holds
for single models such as ControlNets (`load_model`). A source whose weights are stored only as the fp16
variant counts as present and loads that variant. Only absent weights raise `WeightsMissing` (the
runner may fall back); weights that are there but fail to load raise `ModelLoadError` with the cause.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import weights
from studio.devices import has_gpu
from studio.errors import Availability, ModelLoadError, WeightsMissing
from studio.messages import notice
from studio.weights import index

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


@dataclass(frozen=True)
class Layout:
    """How a diffusers source is laid out: the index file, and the folder holding the main weights."""

    index: str
    weights_folder: str


PIPELINE = Layout("model_index.json", "unet/")
"""A whole pipeline (model_index.json + one folder per component); its UNet weights decide presence."""
SINGLE_MODEL = Layout("config.json", "")
"""One model (a ControlNet, a UNet): config.json next to its weights."""
WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    # sharded: diffusers' save_pretrained splits models over 10 GB (SDXL's UNet in fp32) and writes an index
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
HALF_VARIANT = "fp16"


def _variant_name(name: str, variant: str) -> str:
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.{variant}.{suffix}"


def _present(source: ModelSource, relative: str) -> bool:
    if source.kind == "folder":
        return (Path(source.ref) / relative).is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(source.ref, relative, revision=source.revision), str)


def stored_variant(source: ModelSource, layout: Layout = PIPELINE) -> str | None:
    """'fp16' when only the fp16 variant of the weights is stored (a cache filled with variant='fp16'),
    else None (full-precision files, or nothing: `missing_reason` says which)."""
    if source.kind == "file":
        return None
    if any(_present(source, layout.weights_folder + name) for name in WEIGHT_FILES):
        return None
    halves = (_variant_name(name, HALF_VARIANT) for name in WEIGHT_FILES)
    return HALF_VARIANT if any(_present(source, layout.weights_folder + name) for name in halves) else None


def availability(
    locate: Callable[[], ModelSource],
    weights_name: str,
    device: str,
    cpu_note: str | None = None,
    errors: tuple[type[Exception], ...] = (WeightsMissing,),
) -> Availability:
    """A diffusion engine's cheap check (no loading): diffusers importable, the weights `locate()` names on
    disk or in the cache, and `cpu_note` when no GPU will be used. `errors` raised by `locate` mean unavailable."""
    if importlib.util.find_spec("diffusers") is None:
        return Availability(False, "diffusers is not installed (pip install diffusers transformers accelerate)")
    try:
        source = locate()
    except errors as exc:
        return Availability(False, str(exc))
    if reason := missing_reason(source, weights_name):
        return Availability(False, reason)
    if cpu_note:
        if device == "cpu" or not has_gpu():
            return Availability(True, cpu_note)
    return Availability(True)


def registry_ref(name: str) -> str:
    """A weights-registry name -> its hub repo or local file (what the loaders take); a hub id, folder or
    file unchanged."""
    spec = weights.find(name)
    if spec is None:
        return name
    return spec.hub_repo or str(weights.resolve(spec.name, spec.kind))


def missing_reason(source: ModelSource, weights_name: str, layout: Layout = PIPELINE) -> str | None:
    """Why `source` cannot be loaded offline right now (None: it can). Cheap: file checks only.

    The weights count as present in full precision or as the fp16 variant alone.
    """
    hint = f"run `studio weights pull {weights_name}` or pass --model FOLDER"
    if source.kind == "file":
        return None if Path(source.ref).is_file() else f"{source.ref}: checkpoint file not found; {hint}"
    if not _present(source, layout.index):
        if source.kind == "folder":
            return f"{source.ref}: not a diffusers folder (no {layout.index}); {hint}"
        return f"{source.describe()} is not in the Hugging Face cache; {hint}"
    names = [*WEIGHT_FILES, *(_variant_name(name, HALF_VARIANT) for name in WEIGHT_FILES)]
    if not any(_present(source, layout.weights_folder + name) for name in names):
        where = "the cache holds" if source.kind == "hub" else "the folder holds"
        return f"{source.describe()}: {where} its {layout.index} but not the weights; {hint}"
    return None


def snapshot_revision(source: ModelSource) -> str | None:
    """The commit hash of the cached hub snapshot (the folder name under snapshots/), if known."""
    if source.kind != "hub":
        return source.revision
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.ref, "model_index.json", revision=source.revision)
    return Path(found).parent.name if isinstance(found, str) else source.revision


def load_pipeline(pipeline_cls: Any, source: ModelSource, weights_name: str, dtype: torch.dtype) -> Any:
    """A diffusers pipeline from `source` in `dtype` (a container of components: engines run their own loop)."""
    return _load(pipeline_cls, source, weights_name, dtype, PIPELINE)


def load_model(model_cls: Any, source: ModelSource, weights_name: str, dtype: torch.dtype) -> Any:
    """One diffusers model (e.g. `ControlNetModel`, SD 1.5/2.x or SDXL) from a hub id, folder or single file."""
    return _load(model_cls, source, weights_name, dtype, SINGLE_MODEL)


def _load(cls: Any, source: ModelSource, weights_name: str, dtype: torch.dtype, layout: Layout) -> Any:
    """Absent weights -> WeightsMissing; anything else that fails -> ModelLoadError chained to its cause
    (a broken folder is not an absent one). The result is checked to really hold `dtype`."""
    if source.kind != "hub" and (reason := missing_reason(source, weights_name, layout)):
        raise WeightsMissing(reason)  # hub ids are checked by from_pretrained itself (it may download)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    kwargs: dict[str, Any] = {"dtype": dtype}
    with _quiet_diffusers():
        try:
            if source.kind == "file":
                loaded = cls.from_single_file(source.ref, local_files_only=offline, **kwargs)
            else:
                if source.kind == "hub":
                    kwargs.update(revision=source.revision, local_files_only=offline)
                variant = stored_variant(source, layout)
                loaded = cls.from_pretrained(source.ref, variant=variant, **kwargs)
        except Exception as exc:
            if _is_absent(exc) or (source.kind == "hub" and missing_reason(source, weights_name, layout)):
                reason = missing_reason(source, weights_name, layout) or f"{source.describe()}: {_first_line(exc)}"
                raise WeightsMissing(
                    f"{reason.split(';')[0]} and could not be downloaded; "
                    f"run `studio weights pull {weights_name}` or pass --model FOLDER"
                ) from exc
            raise ModelLoadError(
                f"cannot load {source.describe()}: {_first_line(exc)} "
                "(the files are there but unusable; re-download or check the folder)"
            ) from exc
    check_dtype(loaded, dtype, source.describe())
    return loaded


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """No "couldn't connect" chatter or loading bars: studio says it in one line and shows its own progress."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def _is_absent(exc: BaseException) -> bool:
    """Hub errors that mean 'not there' (not cached offline, no such repo, file or revision)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    absent = (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, absent):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_dtype(loaded: Any, dtype: torch.dtype, origin: str) -> None:
    """The denoising network's weights really in `dtype`: diffusers before 0.40 silently ignored `dtype=`,
    leaving fp32 weights while provenance said bf16."""
    import torch

    if isinstance(loaded, torch.nn.Module):
        modules = [loaded]
    else:
        modules = [getattr(loaded, name) for name in ("unet", "transformer") if getattr(loaded, name, None) is not None]
    for module in modules:
        wrong = {p.dtype for p in module.parameters() if p.is_floating_point() and p.dtype != dtype}
        if wrong:
            raise ModelLoadError(
                f"{origin}: {type(module).__name__} loaded in {sorted(map(str, wrong))} "
                f"instead of {dtype}; upgrade diffusers (pip install -U diffusers)"
            )


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


def load_weights_file(path: str | Path, weights_name: str) -> dict[str, torch.Tensor]:
    """An extra weights file (adapter, fine-tune) as a flat state dict of memory-mapped tensors (nothing read
    until used): .safetensors, or a torch checkpoint (.ckpt/.pt/.pth/.bin, unwrapping Lightning's
    'state_dict'); loaded without running code (studio.weights.index)."""
    return index.open_state(_weights_file(path, weights_name))


def weights_file_index(path: str | Path, weights_name: str) -> dict[str, index.TensorInfo]:
    """Every key's shape and dtype, as `load_weights_file` would return them, without reading the tensors
    (the safetensors header; a torch checkpoint's pickle), so checks up front are cheap and exact."""
    return index.read_index(_weights_file(path, weights_name))


def weights_file_keys(path: str | Path, weights_name: str) -> list[str]:
    """The key names of a weights file (see `weights_file_index`)."""
    return list(weights_file_index(path, weights_name))


def _weights_file(path: str | Path, weights_name: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        named = Path(weights_name).suffix.lower() not in SINGLE_FILE_SUFFIXES  # a registry name, not the path
        hint = f"run `studio weights pull {weights_name}`" if named else "check the path"
        raise WeightsMissing(f"{file}: weights file not found; {hint}")
    return file


def load_exactly(module: torch.nn.Module, state: dict[str, torch.Tensor], origin: str, what: str, hint: str) -> None:
    """`state` into `module` (built on the meta device or not) with nothing missing, extra or misshapen;
    else one line naming `origin` and the first key that does not fit (`hint` says the likely cause)."""
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ModelLoadError(f"{origin}: missing {what} key for '{key}'; {hint}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{origin}: '{key}' has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}; {hint}"
            )
    unused = sorted(set(state) - set(expected))
    if unused:
        raise ModelLoadError(f"{origin}: key '{unused[0]}' (and {len(unused) - 1} more) fits no {what} module; {hint}")
    module.load_state_dict(state, strict=True, assign=True)
