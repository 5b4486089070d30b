"""Write outputs atomically: a temporary file in the target folder, then a rename.

No partial file survives an error or Ctrl-C, and a finished file gets the mode a plain open() gives.
Images, reports, sidecars, test pairs and converted weights all go through `atomic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.errors import OutputError, os_problem
from studio.io.encode import encode
from studio.io.formats import LOSSY_FORMATS, is_lossy
from studio.io.os_errors import NAME_MAX, os_words
from studio.io.paths import make_folder
from studio.io.picture import Picture
from studio.messages import warn


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""What a plain open() would give; mkstemp alone gives 0600."""


_PID_DIGITS = 7  # Linux's largest pid (4194304) has 7 digits
_RANDOM = 8  # the random part tempfile.mkstemp adds
_PART = re.compile(r"(?:\d{1,7}\.)?[a-z0-9_]{8}")
"""The middle of a temporary name: `PID.` (absent in names from studio 0.1's first releases) and mkstemp's part."""


def _cut(text: str, budget: int) -> str:
    """`text` shortened to at most `budget` bytes in the file system's encoding, never splitting a character."""
    raw = os.fsencode(text)
    return text if len(raw) <= budget else raw[:budget].decode("utf-8", "ignore")


def _temp_affixes(path: Path) -> tuple[str, str]:
    """The prefix (`.STEM.`) and suffix (`.part.EXT`) of `path`'s temporary files; STEM is shortened so the
    whole name (`.STEM.PID.RANDOM.part.EXT`) fits NAME_MAX whatever the pid."""
    suffix = ".part" + path.suffix
    budget = NAME_MAX - len(os.fsencode(suffix)) - _RANDOM - _PID_DIGITS - 3  # three dots
    return f".{_cut(path.stem, budget)}.", suffix


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_parts(targets: list[Path]) -> list[Path]:
    """Delete the temporary files an earlier run left beside `targets` (killed with -9, power lost): only
    names of studio's own pattern for those very targets, and only when the process that made them is gone.
    Returns what was removed."""
    removed: list[Path] = []
    by_folder: dict[Path, list[tuple[str, str]]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, []).append(_temp_affixes(target))
    for folder, affixes in by_folder.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue  # no folder yet (or unreadable): nothing of ours in it
        for name in names:
            for prefix, suffix in affixes:
                middle = name[len(prefix) : -len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
                if not _PART.fullmatch(middle):
                    continue
                pid = middle.split(".")[0] if "." in middle else ""
                if pid and _alive(int(pid)):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
                    removed.append(folder / name)
                break
    return removed


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`; on success it is synced and renamed to `path`, else removed.

    A full disk, a read-only file system or a name too long becomes one OutputError in words.
    """
    make_folder(path.parent)
    prefix, suffix = _temp_affixes(path)
    try:
        handle, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path.parent}: {os_words(exc)}") from None
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if os_problem(exc) is None:
            raise
        raise OutputError(f"{path}: {os_words(exc)}") from None
    except BaseException:  # includes KeyboardInterrupt: never leave a partial output behind
        temp.unlink(missing_ok=True)
        raise


def jpeg_quality_problem(fmt: str, quality: int, force_jpeg: bool) -> str | None:
    """Why a lossy quality is refused (it would lose the restored detail), or None when it is fine."""
    if fmt in LOSSY_FORMATS and quality < 95 and not force_jpeg:
        return (
            f"{LOSSY_FORMATS[fmt]} quality {quality} would throw away the restored detail; use --quality 95 or more, "
            "PNG/WebP/TIFF, or --force-jpeg"
        )
    return None


def write_image(
    path: Path,
    picture: Picture,
    fmt: str,
    quality: int,
    provenance: dict[str, Any] | Callable[[], dict[str, Any]],
    force_jpeg: bool = False,
) -> None:
    """Write atomically: a temp file in the target folder, then rename. No partial file survives.

    A callable `provenance` is called once the pixels are encoded (PNG), so figures still being measured
    in another thread (the quality report) are recorded without holding up the compression.
    """
    if problem := jpeg_quality_problem(fmt, quality, force_jpeg):
        raise OutputError(f"{path}: {problem}")
    if is_lossy(fmt, quality):
        warn(
            f"{path.name}: {LOSSY_FORMATS[fmt]} re-compresses the result; PNG, lossless WebP, TIFF or "
            "JPEG XL at --quality 100 keep every restored detail"
        )
    with atomic(path) as temp:
        encode(temp, picture, fmt, quality, partial(_provenance_json, provenance), path.name)


def _provenance_json(provenance: dict[str, Any] | Callable[[], dict[str, Any]]) -> str:
    return json.dumps(provenance if isinstance(provenance, dict) else provenance(), sort_keys=True, default=str)


def write_text_atomic(path: Path, text: str) -> None:
    """Reports and sidecars get the same all-or-nothing write as images."""
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    with atomic(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_png_text(path: Path, rgb: np.ndarray, text: dict[str, str]) -> None:
    """An 8-bit RGB PNG with plain text entries (not studio provenance), written atomically.

    For files studio makes that are not restorations: test pairs, comparison sheets.
    """
    info = PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    pixels = np.clip(np.round(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    with atomic(path) as temp:
        Image.fromarray(pixels).save(temp, format="PNG", pnginfo=info)
