"""Operating-system errors in words: what a person needs to read is "disk full", not "[Errno 28]"."""

from __future__ import annotations

import errno
import os
from pathlib import Path

WORDS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "symbolic link loop",
    errno.ENOENT: "no such file",
    errno.EIO: "input/output error (failing disk or lost network share)",
}


def os_problem(exc: OSError) -> str:
    """An OSError in words a person reads at a glance ("disk full"), not an errno."""
    return WORDS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()


NAME_MAX = 255
"""Bytes in one file name on Linux, macOS and Windows file systems."""


def name_problem(path: Path) -> str | None:
    """Why `path`'s last part cannot be a file name here (too long), or None."""
    size = len(os.fsencode(path.name))
    if size > NAME_MAX:
        return f"name too long ({size} bytes; file systems allow {NAME_MAX})"
    return None
