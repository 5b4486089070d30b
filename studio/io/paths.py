"""Output-path safety: never clobber an input, an existing output (unless asked) or a folder.

Checked for every job before the first pixel, so a batch fails up front instead of half-way.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.errors import OutputError
from studio.io.os_errors import name_problem, os_words


class InputSet:
    """The batch's inputs, resolved once, so each output is checked against all of them cheaply."""

    def __init__(self, inputs: list[Path]) -> None:
        self.paths = {real_path(path) for path in inputs}
        self.files = {_file_id(path) for path in inputs if path.exists()}

    def __contains__(self, path: Path) -> bool:
        return real_path(path) in self.paths or (path.exists() and _file_id(path) in self.files)


def real_path(path: Path) -> Path:
    """The absolute path with links followed as far as they go: a link loop is left as it is instead of
    raising (Path.resolve raises on loops), so the input that is one fails alone, in words."""
    return Path(os.path.realpath(path))


def input_problem(path: Path) -> str | None:
    """Why an input given by name cannot be read at all (missing, a link loop, a name too long), or None."""
    try:
        path.stat()
    except OSError as exc:
        return f"{path}: {os_words(exc)}"
    return None


def _file_id(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def check_output_path(output: Path, inputs: InputSet, overwrite: bool) -> None:
    """Refuse to clobber an input (ever), an existing output (unless --overwrite), or a folder."""
    if problem := name_problem(output):
        raise OutputError(f"{output}: {problem}; shorten the input's name, or give -o a shorter file name")
    if output in inputs:
        raise OutputError(f"{output}: is an input file; studio never overwrites inputs (choose another path)")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; give a file name")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")


def make_folder(folder: Path) -> None:
    """mkdir -p, with one clear line when a file stands where a folder must go."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{folder}: cannot create this folder, a file of that name is in the way") from None
    except PermissionError:
        raise OutputError(f"{folder}: no permission to create or write this folder") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create this folder ({os_words(exc)})") from None
