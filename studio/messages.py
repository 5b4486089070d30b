"""Notices, warnings and progress for the person at the terminal, on stderr, so stdout stays clean for JSON.

Library code calls `notice`/`warn`; the CLI may install a different sink (tests collect them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Sink = Callable[[str, str], None]
ProgressFn = Callable[[int, int], None]
"""progress(done, total): called as work units (tiles, steps) finish."""


def _stderr_sink(level: str, text: str) -> None:
    prefix = {"warning": "warning: ", "notice": ""}[level]
    print(f"{prefix}{text}", file=sys.stderr, flush=True)


_sink: Sink = _stderr_sink


def set_sink(sink: Sink | None) -> None:
    """Route messages elsewhere (the CLI's rich console, or a list in tests); None restores stderr."""
    global _sink
    _sink = sink or _stderr_sink


def notice(text: str) -> None:
    """Something the user should know that is not a problem (a one-time conversion, a fallback taken)."""
    _sink("notice", text)


def warn(text: str) -> None:
    """Something that may hurt the result (JPEG re-compression, upscaling an upscale, low-precision detector)."""
    _sink("warning", text)
