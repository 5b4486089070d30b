"""The options of `studio video` that are not restore settings, with their defaults (light: read by --help)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CODECS = ("h264", "h265", "prores", "ffv1")
DEFAULT_CODEC = "h264"
DEFAULT_CRF = 18
"""libx264 CRF 18, the guide's re-encoding setting: visually transparent for most content."""
DEFAULT_TEMPORAL = 0.5
"""--temporal's default: measured in benchmarks/bench_video.py and tests/video/test_temporal.py (README: Video)."""
SEGMENT_FRAMES = 48
"""Frames per encoded segment: the most a restart redoes, and the most raw frames the work folder holds."""
IMAGE_ONLY_SETTINGS = ("format", "quality", "force_jpeg", "dpi", "alpha")
"""Restore settings about still-image files: `studio video` has no option for them."""


@dataclass
class VideoOptions:
    """The options of `studio video` that are not restore settings."""

    codec: str = DEFAULT_CODEC
    crf: int | None = None
    temporal: float = DEFAULT_TEMPORAL
    resume: bool = False
    overwrite: bool = False
    report: Path | None = None
    segment_frames: int = SEGMENT_FRAMES

    def command_args(self) -> tuple[str, ...]:
        """These options as they reproduce the run (defaults left out)."""
        args: list[str] = []
        if self.codec != DEFAULT_CODEC:
            args += ["--codec", self.codec]
        if self.crf is not None:
            args += ["--crf", str(self.crf)]
        if self.temporal != DEFAULT_TEMPORAL:
            args += ["--temporal", f"{self.temporal:g}"]
        return tuple(args)
