"""Operating-system errors in words: what a person needs to read is "disk full", not "[Errno 28]"."""

from __future__ import annotations

import os
from pathlib import Path

from studio.errors import os_problem


def os_words(exc: OSError) -> str:
    """Any OSError in words ("disk full"), not an errno: the machine's problem when it is one, else its text."""
    return os_problem(exc) or (exc.strerror or type(exc).__name__).lower()


NAME_MAX = 255
"""Bytes in one file name on Linux, macOS and Windows file systems."""


def name_problem(path: Path) -> str | None:
    """Why `path`'s last part cannot be a file name here (too long), or None."""
    size = len(os.fsencode(path.name))
    if size > NAME_MAX:
        return f"name too long ({size} bytes; file systems allow {NAME_MAX})"
    return None
