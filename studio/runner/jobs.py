"""Jobs and paths: which inputs become which outputs, and where a batch's report goes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from studio.errors import UsageError
from studio.io import FORMAT_EXTENSIONS, SUPPORTED_EXTENSIONS, image_files, input_problem, real_path


@dataclass
class Job:
    """One input and where its result goes. `error` marks an input that failed before reading."""

    source: Path
    output: Path
    error: str | None = None


def folder_output_root(folder: Path) -> Path:
    """Where a folder's results go when no -o is given: a sibling `<folder>_restored/`."""
    return folder.parent / f"{folder.name}_restored"


def default_report_path(inputs: list[Path], output: Path | None) -> Path | None:
    """A batch's report lives in its output folder: -o, or the one folder input's `_restored` sibling."""
    if output is not None:
        return output / "studio_report.json"
    if len(inputs) == 1 and inputs[0].is_dir():
        return folder_output_root(inputs[0]) / "studio_report.json"
    return None


def collect_jobs(inputs: Iterable[Path], output: Path | None, fmt: str, output_is_folder: bool = False) -> list[Job]:
    """Expand files and folders (recursively) into jobs with their output paths.

    No -o: `photo_restored.png` next to a file, `<folder>_restored/` beside a folder.
    With -o and one file: that file name (or a folder, if it is one or was given with a trailing slash).
    With -o and several inputs or a folder: a folder; each folder's tree is mirrored inside it.
    """
    inputs = list(inputs)
    ext = FORMAT_EXTENSIONS[fmt]
    many = len(inputs) > 1 or any(path.is_dir() for path in inputs)
    out_is_dir = output is not None and (many or output_is_folder or output.is_dir())
    if many and output is not None and output.suffix.lower() in SUPPORTED_EXTENSIONS:
        raise UsageError(f"-o {output}: several inputs need an output folder, not an image file name")
    jobs: list[Job] = []
    for path in inputs:
        if path.is_dir():
            files = image_files(path)
            if not files:
                jobs.append(Job(path, path, error=f"{path}: folder holds no supported images"))
                continue
            if output is None:
                root = folder_output_root(path)
            else:
                root = output / path.name if len(inputs) > 1 else output
            jobs += [Job(f, (root / f.relative_to(path)).with_suffix(ext)) for f in files]
        elif problem := input_problem(path):  # missing, a link loop: this file fails alone, in words
            jobs.append(Job(path, path, error=problem))
        elif output is None:
            jobs.append(Job(path, path.with_name(f"{path.stem}_restored{ext}")))
        elif out_is_dir:
            jobs.append(Job(path, output / f"{path.stem}{ext}"))
        else:
            jobs.append(Job(path, output))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.error is not None:
            continue
        key = real_path(job.output)
        if key in seen:
            job.error = f"{job.source}: would write the same output as {seen[key]} ({job.output}); rename one"
        seen.setdefault(key, job.source)
    return jobs


def sidecar_path(output: Path) -> Path:
    """Where `--sidecar` writes an output's provenance JSON: beside it, `.json` appended."""
    return output.with_name(output.name + ".json")
