"""Leaving after Ctrl-C: say what was kept, and do not wait for native work nobody will collect."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from studio.native import abandoned

INTERRUPTED = 130


def exit_after_interrupt(console: Any) -> None:
    """Report the interruption and exit 130. After Ctrl-C an abandoned native call (an ncnn tile) may still
    run in a worker thread, and the normal interpreter shutdown would wait seconds for it: the report is
    written, so leave at once."""
    console.print("[red]interrupted[/] (Ctrl-C): finished files are kept, the rest were not started")
    if abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    raise typer.Exit(INTERRUPTED)
