"""The resumable state of a clip in progress: a hidden work folder beside the output.

How a restart gives the same file as an uninterrupted run: the clip is always encoded in segments of
`segment_frames` frames, each by a fresh encoder opened with identical settings (so each segment starts on a
key frame and the segments' packets join into one valid stream), and the final file is made by remuxing the
segments' packets, in order, with the source's copied streams. Every restored frame is also kept, losslessly
(the exact pixels the encoder received), until its segment is finished; the last frame of a segment is kept
too, because the temporal filter of the next frame needs it. After Ctrl-C or a crash, a rerun of the same
command finds the finished segments and the kept frames, feeds those frames to a fresh segment encoder and
continues with the next frame: the encoders see the same frames in the same order as in one run, so the
frames are identical. The folder holds at most one segment of raw frames, and is removed when the output is
written. A manifest with a fingerprint of the command (input file, settings, codec, temporal strength,
studio version) makes sure only the same command continues the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import OutputError, UsageError
from studio.io.paths import make_folder

MANIFEST = "manifest.json"
STATS = "stats.jsonl"


def work_folder(output: Path) -> Path:
    """Where the work on `output` is kept: `.NAME.studio-work/` beside it."""
    return output.with_name(f".{output.name}.studio-work")


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Resume:
    """Where a run starts: the next frame to restore, and what earlier runs left for it."""

    next_frame: int = 0
    segments: int = 0
    kept: list[int] = field(default_factory=list)  # frame indices stored for the open segment
    stats: list[dict[str, Any]] = field(default_factory=list)  # one per finished frame


class WorkFolder:
    """The segments, kept frames, per-frame statistics and manifest of one output in progress."""

    def __init__(self, output: Path, segment_frames: int) -> None:
        self.path = work_folder(output)
        self.segment_frames = segment_frames

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def check_resumable(self, fingerprint: str) -> None:
        """--resume: there must be work of this very command to continue (checked up front)."""
        earlier = self.manifest()
        if earlier is None or earlier.get("fingerprint") != fingerprint:
            what = "nothing to resume" if earlier is None else "it was made by a different command or input"
            raise UsageError(f"--resume: {self.path}: {what}; run without --resume to start afresh")

    def start(self, manifest: dict[str, Any]) -> Resume:
        """Continue the work of the same command, or start afresh (a different command's work is replaced)."""
        earlier = self.manifest()
        if earlier is not None and earlier.get("fingerprint") == manifest["fingerprint"]:
            return self._position()
        self.remove()
        make_folder(self.path)
        self._write(MANIFEST, json.dumps(manifest, indent=2, default=str))
        return Resume()

    def _position(self) -> Resume:
        segments = 0
        while self.segment_path(segments).exists():
            segments += 1
        first = segments * self.segment_frames
        kept = []
        while self.frame_path(first + len(kept)).exists():
            kept.append(first + len(kept))
        next_frame = first + len(kept)
        stats = [json.loads(line) for line in self._read_lines(STATS)][:next_frame]
        if len(stats) < next_frame:
            raise OutputError(f"{self.path}: the work folder is incomplete; delete it to start afresh")
        self._write(STATS, "".join(json.dumps(item) + "\n" for item in stats))
        return Resume(next_frame, segments, kept, stats)

    def _read_lines(self, name: str) -> list[str]:
        try:
            return [line for line in (self.path / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError:
            return []

    def _write(self, name: str, text: str) -> None:
        temp = self.path / f".{name}.tmp"
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, self.path / name)

    def segment_path(self, index: int, suffix: str = ".mp4") -> Path:
        existing = sorted(self.path.glob(f"seg-{index:05d}.*"))
        return existing[0] if existing else self.path / f"seg-{index:05d}{suffix}"

    def segments(self) -> list[Path]:
        return sorted(self.path.glob("seg-*.*"))

    def frame_path(self, index: int) -> Path:
        return self.path / f"frame-{index:08d}.npy"

    def keep_frame(self, index: int, pixels: np.ndarray, stats: dict[str, Any]) -> None:
        """Record a finished frame: its statistics first, then its pixels (so every kept frame has its line)."""
        with open(self.path / STATS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(stats) + "\n")
        temp = self.path / f".frame-{index:08d}.tmp.npy"
        np.save(temp, pixels)
        os.replace(temp, self.frame_path(index))

    def load_frame(self, index: int) -> np.ndarray:
        return np.load(self.frame_path(index))

    def segment_done(self, segment: int) -> None:
        """A segment is encoded: its frames go, except its last (the next frame's temporal reference)."""
        first = segment * self.segment_frames
        for index in range(max(0, first - 1), first + self.segment_frames - 1):
            self.frame_path(index).unlink(missing_ok=True)

    def remove(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
