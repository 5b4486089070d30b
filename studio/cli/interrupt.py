"""Ctrl-C and SIGTERM during a run: stop between two work units, keep what finished, always write the report.

SIGTERM (what `timeout`, systemd and container runtimes send) is treated like Ctrl-C. The first signal stops
the batch (KeyboardInterrupt in the main thread, so temporary files are removed on the way out); later ones,
and any that arrives while the report and summary are written, are only counted, so the report is never
cut short. After an interruption an abandoned native call (an ncnn tile) may still run in a worker thread:
the process then leaves with os._exit, since a normal shutdown would wait for it or abort inside it
("terminate called without an active exception").
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType, TracebackType
from typing import Any

import typer

from studio.native import abandoned

INTERRUPTED = 130
"""The exit code of an interrupted run, whether by Ctrl-C or SIGTERM."""
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """While entered (main thread only): the first SIGINT/SIGTERM raises KeyboardInterrupt, the rest are
    recorded; `finishing()` turns raising off for the last steps (report, summary)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._armed = True
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if self._armed:
            self._armed = False
            raise KeyboardInterrupt

    def finishing(self) -> None:
        self._armed = False

    @property
    def name(self) -> str:
        """The first signal received, as people call it."""
        first = self.received[0] if self.received else "SIGINT"
        return "Ctrl-C" if first == "SIGINT" else first

    def __enter__(self) -> Interrupts:
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup`, background jobs: keep ignoring
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does (unless the parent process set it to be ignored)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _raise_interrupt)


def leave(code: int) -> None:
    """Exit with `code`; at once (os._exit) while an abandoned native call still runs."""
    if abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def exit_after_interrupt(console: Any, cause: str = "Ctrl-C") -> None:
    """Report the interruption and exit 130 (the report is already written)."""
    console.print(f"[red]interrupted[/] ({cause}): finished files are kept, the rest were not started")
    leave(INTERRUPTED)
