"""Uploads: size-limited copy to disk, type by content (never by name), a full decode before queueing.

Every refusal is an `UploadRejected` carrying its HTTP status, so the app answers with one line.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

from studio.errors import InputError, PixelBudgetExceeded
from studio.io import check_output_budget, read_image

CHUNK = 1 << 20
ACCEPTED = "PNG, JPEG, WebP or TIFF"

_DECODES = threading.BoundedSemaphore(2)
"""Full decodes at once: each holds a float32 copy of the image, so memory stays bounded under load."""


class UploadRejected(InputError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff_extension(head: bytes) -> str | None:
    """The file's real type from its first bytes: '.png', '.jpg', '.webp', '.tif', or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return None


def safe_stem(filename: str | None) -> str:
    """A file-system-safe stem of the client's file name (no folders, no odd characters)."""
    stem = Path((filename or "").replace("\\", "/")).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return stem or "upload"


def save_upload(source: BinaryIO, folder: Path, filename: str | None, limit_bytes: int) -> Path:
    """Copy the upload into `folder` under its name and the extension of its real type."""
    head = source.read(16)
    if not head:
        raise UploadRejected(400, f"{filename or 'upload'}: empty file (0 bytes)")
    extension = sniff_extension(head)
    if extension is None:
        raise UploadRejected(415, f"{filename or 'upload'}: not a {ACCEPTED} image (type checked by content)")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{safe_stem(filename)}{extension}"
    size = len(head)
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(head)
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > limit_bytes:
                raise UploadRejected(
                    413, f"{filename or 'upload'}: larger than the upload limit of {limit_bytes / 1e6:g} MB"
                )
            out.write(chunk)
    return target


def check_decodes(path: Path, name: str, max_pixels: int, scale: float, max_output_pixels: int) -> tuple[int, int]:
    """Decode fully (truncation shows only here) within the pixel budgets of the input and of the output
    (input x scale, as `studio restore` checks it); returns (width, height)."""
    with _DECODES:
        try:
            picture = read_image(path, max_pixels)
            check_output_budget(path, picture.size, scale, max_output_pixels)
        except PixelBudgetExceeded as exc:
            raise UploadRejected(413, _named(str(exc), path, name)) from None
        except InputError as exc:
            raise UploadRejected(422, _named(str(exc), path, name)) from None
    return picture.size


def _named(message: str, path: Path, name: str) -> str:
    """Say the client's file name, not the server's path."""
    return message.replace(str(path), name)
