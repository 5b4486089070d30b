"""The weights catalogue (configs/weights.toml): its entries, and where each one lives on disk.

One registry for every kind of model (sr, face, detector, diffusion), so `studio weights list` shows
everything; lookups here never download or convert anything (`studio.weights.fetch` does).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import ConfigError, UsageError
from studio.settings import project_root, read_toml


@dataclass(frozen=True)
class WeightSpec:
    """One registry entry. `extra` keeps keys this version does not know, so newer entries still load."""

    name: str
    kind: str
    arch: str = ""
    scale: int | None = None
    filename: str = ""
    url: str = ""
    hub_repo: str = ""
    sha256: str = ""
    license: str = ""
    good_for: str = ""
    offline_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


_KNOWN_KEYS = {f for f in WeightSpec.__dataclass_fields__ if f != "extra"}


def registry_file() -> Path:
    """The shipped registry, configs/weights.toml."""
    return project_root() / "configs" / "weights.toml"


def weights_dir() -> Path:
    """$STUDIO_WEIGHTS_DIR, else weights/ of a source checkout, else the per-user cache folder."""
    if env := os.environ.get("STUDIO_WEIGHTS_DIR"):
        return Path(env).expanduser()
    root = project_root()
    if root.name != "_data" and (root / "weights").is_dir():
        return root / "weights"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "studio" / "weights"


def _parse_entry(entry: Any, index: int, origin: str) -> WeightSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{origin}: [[weights]] entry {index + 1} is not a table")
    for key in ("name", "kind"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(f"{origin}: [[weights]] entry {index + 1} needs a string '{key}'")
    known = {k: v for k, v in entry.items() if k in _KNOWN_KEYS}
    scale = known.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int)):
        raise ConfigError(f"{origin}: weights '{entry['name']}': scale must be an integer, got {scale!r}")
    for key, value in known.items():
        if key != "scale" and not isinstance(value, str):
            raise ConfigError(f"{origin}: weights '{entry['name']}': key '{key}' must be a string, got {value!r}")
    extra = {k: v for k, v in entry.items() if k not in _KNOWN_KEYS}
    return WeightSpec(**known, extra=extra)


def missing_package(spec: WeightSpec) -> str | None:
    """The install command of the Python package an entry's network class comes from (registry keys `package`
    and `install`), when that package is not installed; None when nothing is missing."""
    import importlib.util

    package = spec.extra.get("package")
    if not package or importlib.util.find_spec(str(package)) is not None:
        return None
    return str(spec.extra.get("install") or f"pip install {package}")


_cache: dict[tuple[str, float], list[WeightSpec]] = {}


def registry() -> list[WeightSpec]:
    """All entries of configs/weights.toml in file order (re-read when the file changes)."""
    path = registry_file()
    try:
        stamp = (str(path), path.stat().st_mtime)
    except OSError:
        raise ConfigError(f"{path}: weights registry not found") from None
    if stamp not in _cache:
        data = read_toml(path)
        entries = data.get("weights", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: 'weights' must be an array of tables ([[weights]])")
        specs = [_parse_entry(entry, i, str(path)) for i, entry in enumerate(entries)]
        seen: set[str] = set()
        for spec in specs:
            if spec.name.lower() in seen:
                raise ConfigError(f"{path}: weights name '{spec.name}' appears twice")
            seen.add(spec.name.lower())
        _cache.clear()
        _cache[stamp] = specs
    return _cache[stamp]


def find(name: str) -> WeightSpec | None:
    """The entry called `name` (case-insensitive), or None."""
    for spec in registry():
        if spec.name.lower() == name.lower():
            return spec
    return None


def get(name: str) -> WeightSpec:
    """The entry called `name`; a UsageError listing the known names otherwise."""
    spec = find(name)
    if spec is None:
        names = ", ".join(s.name for s in registry())
        raise UsageError(f"unknown weights '{name}'; known: {names}")
    return spec


def names(kind: str | None = None) -> list[str]:
    """The names of all entries, or of one kind."""
    return [s.name for s in registry() if kind is None or s.kind == kind]


def composite_members(spec: WeightSpec) -> list[str]:
    """A composite entry names a base and/or adapters (other entries) instead of one file: their names (a
    composite without a base starts with a file that holds its own base, e.g. StableSR's full file)."""
    base = spec.extra.get("base")
    return [*([str(base)] if base else []), *(str(a) for a in spec.extra.get("adapters", ()))]


def converted_path(spec: WeightSpec) -> Path:
    """Where the safetensors converted from the entry's bundled ncnn copy is kept."""
    return weights_dir() / f"{spec.name}.safetensors"


def offline_files(spec: WeightSpec) -> tuple[Path, Path] | None:
    """The (.param, .bin) of the entry's `offline_source` when that package is installed, else None."""
    if not spec.offline_source or ":" not in spec.offline_source:
        return None
    package, relative = spec.offline_source.split(":", 1)
    module = importlib.util.find_spec(package.replace("-", "_"))
    if module is None or not module.submodule_search_locations:
        return None
    param = Path(next(iter(module.submodule_search_locations))) / relative
    bin_path = param.with_suffix(".bin")
    return (param, bin_path) if param.is_file() and bin_path.is_file() else None


def local_path(spec: WeightSpec) -> Path | None:
    """The entry's file if it is on disk now: the downloaded original first, then a converted copy."""
    if spec.filename and (weights_dir() / spec.filename).is_file():
        return weights_dir() / spec.filename
    if spec.offline_source and converted_path(spec).is_file():
        return converted_path(spec)
    return None
