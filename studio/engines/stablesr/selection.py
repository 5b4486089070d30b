"""What a stablesr run uses, told from --model and --adapter before anything loads: a registry composite, a
full official StableSR file on its own (it holds SD 2.1), or an SD base with adapters (StableSR files or
ControlNets), and whether those parts make one steering."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from studio import weights
from studio.diffusion import loading
from studio.diffusion.identify import AdapterSource, identify
from studio.engines import research_checkpoints
from studio.engines.stablesr.components import EPSILON, ModuleConfigs, base_configs, shipped_configs
from studio.engines.stablesr.keys import layout_of
from studio.errors import ModelLoadError, UsageError
from studio.settings import Settings

DEFAULT_MODEL = "stablesr-512"


@dataclasses.dataclass(frozen=True)
class Selection:
    """The base model and the adapters (paths or hub ids) a run uses, and the licence to show.

    `standalone`: the base is a full official StableSR file (it holds SD 2.1's UNet, VAE and text encoder), so
    no SD folder is loaded; `prediction` is its model's (epsilon for 512, v for 768v: told by the registry)."""

    base: str
    adapters: tuple[str, ...]
    license: str = ""
    standalone: bool = False
    prediction: str = EPSILON


def select(settings: Settings) -> Selection:
    """--model (registry composite, full official file, or base) and --adapter (comma-separated) -> the parts.

    A composite without a base starts with a full file; a full file given as --model is its own base, and
    --adapter then adds files (the CFW file) to it."""
    model = settings.model or DEFAULT_MODEL
    spec = weights.find(model)
    base, adapters, license_ = model, (), ""
    if spec is not None and (members := weights.composite_members(spec)):
        base, adapters, license_ = members[0], tuple(members[1:]), spec.license
        if not spec.extra.get("base"):
            return _standalone(base, adapters, settings, license_)
    elif (layout := official_layout(model)) == "full":
        return _standalone(model, (), settings, spec.license if spec else "")
    elif layout is not None:
        raise UsageError(
            f"--model {model}: this file holds StableSR's {layout} layout, not the full model; "
            "give an SD 2.1 base as --model and this file as --adapter"
        )
    if settings.adapter:
        adapters = _given_adapters(settings)
    if not adapters:
        raise UsageError(
            f"--model {model}: a base model needs --adapter (a StableSR checkpoint or a ControlNet), "
            "or use a composite name such as stablesr-512 or stablesr-tile-sd15, or a full StableSR file"
        )
    return Selection(base, adapters, license_)


def _given_adapters(settings: Settings) -> tuple[str, ...]:
    return tuple(a.strip() for a in (settings.adapter or "").split(",") if a.strip())


def _standalone(base: str, adapters: tuple[str, ...], settings: Settings, license_: str) -> Selection:
    spec = weights.find(base) or next((s for s in weights.registry() if s.filename == Path(base).name), None)
    prediction = str(spec.extra.get("prediction", EPSILON)) if spec else EPSILON
    if settings.adapter:
        adapters = _given_adapters(settings)
    return Selection(base, adapters, license_, standalone=True, prediction=prediction)


def official_layout(model: str) -> str | None:
    """The StableSR layout ('full', 'adapter', 'cfw') of a --model that is an official StableSR file: a registry
    file entry (its arch says which), or a weights file read for its key names; None for anything else (a hub
    id, a folder, an SD single file, a missing or unreadable file: the base loader says what is wrong)."""
    spec = weights.find(model)
    if spec is not None:
        return "full" if spec.filename and "StableSR full model" in spec.arch else None
    path = Path(model).expanduser()
    if path.suffix.lower() not in loading.SINGLE_FILE_SUFFIXES or not path.is_file():
        return None
    try:
        return layout_of(loading.weights_file_keys(path, model))
    except (UsageError, ModelLoadError):
        return None


def identify_adapters(selection: Selection) -> list[AdapterSource]:
    """Each adapter's kind and layout (a single file is read for its key names only)."""
    return [
        identify(loading.registry_ref(name), name, "stablesr", research_checkpoints()) for name in selection.adapters
    ]


def part_kinds(selection: Selection, adapters: list[AdapterSource]) -> list[str]:
    """What each part is: 'full', 'adapter', 'cfw' (StableSR files) or 'controlnet'."""
    kinds = [a.layout if a.kind == "stablesr" else "controlnet" for a in adapters]
    return ["full", *kinds] if selection.standalone else kinds


def module_configs(selection: Selection) -> ModuleConfigs:
    """The UNet/VAE/text configs the official files are checked against: shipped for a full file, else the
    base's own (read from its folder or the hub cache; no download)."""
    if selection.standalone:
        return shipped_configs(selection.prediction)
    source = loading.resolve_source(loading.registry_ref(selection.base))
    try:
        return base_configs(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {source.describe()}: {str(exc).strip().splitlines()[0][:200]}") from exc


def check_combination(kinds: list[str]) -> None:
    """The adapters must make one steering: a StableSR model (full or adapter file, CFW optional) or
    ControlNets, never both; the same check before the first pixel and when loading."""
    stablesr = [kind for kind in kinds if kind in ("full", "adapter")]
    if stablesr and "controlnet" in kinds:
        raise UsageError("--adapter: a StableSR checkpoint and a ControlNet cannot steer the same run")
    if "cfw" in kinds and not stablesr:
        raise UsageError("--adapter: the CFW file needs a StableSR model file with it")
    if not stablesr and "controlnet" not in kinds:
        raise UsageError("--adapter: no StableSR model or ControlNet among the adapters")
