"""Which files studio reads and writes, by extension, and finding them in folders.

One place for the extension tables, so the reader, the output-format choice, the batch's folder walk
and the service's uploads agree on what an image is.
"""

from __future__ import annotations

from pathlib import Path

SUPPORTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".jxl")
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "avif": ".avif", "jxl": ".jxl"}
WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".avif", ".jxl")
LOSSY_FORMATS = {"jpg": "JPEG", "avif": "AVIF", "jxl": "JPEG XL"}
"""Formats written at --quality (below 95 only with --force-jpeg), by the name people know them by."""


def is_lossy(fmt: str, quality: int) -> bool:
    """Whether the output loses restored detail: JPEG and AVIF always (AVIF at 100 is 4:4:4 but still
    off by up to 2/255), JPEG XL below quality 100 (at 100 libjxl is mathematically lossless)."""
    return fmt in ("jpg", "avif") or (fmt == "jxl" and quality < 100)


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv")
"""Clips: `studio video` reads them; `studio restore` points there instead of calling them unsupported."""


def is_supported(path: Path) -> bool:
    """Whether studio reads files with this extension."""
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def output_format(path: Path, requested: str | None) -> str:
    """The format to write: the explicit one, else from the output's extension, else PNG."""
    if requested:
        return requested
    suffix = path.suffix.lower()
    for name, ext in FORMAT_EXTENSIONS.items():
        if suffix == ext or (name == "jpg" and suffix == ".jpeg") or (name == "tiff" and suffix == ".tiff"):
            return name
    return "png"


def image_files(folder: Path) -> list[Path]:
    """Supported images under `folder`, recursively and sorted, skipping hidden files and folders."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and is_supported(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)  # .thumbs/, .DS_Store
    )
