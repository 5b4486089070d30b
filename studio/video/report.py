"""The JSON report of a video run, like `studio restore`'s batch report, for one clip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.io import write_text_atomic
from studio.version import __version__
from studio.video.plan import VideoPlan
from studio.video.run import VideoResult


def report_data(vplan: VideoPlan, result: VideoResult) -> dict[str, Any]:
    """Status, progress, speed, flicker and quality of the clip, with the settings and where they came from."""
    provenance = result.provenance
    return {
        "studio_version": __version__,
        "input": str(vplan.clip.path),
        "output": str(vplan.output),
        "status": result.status,
        "frames": {"done": result.frames_done, "total": result.frames_total, "this_run": result.frames_this_run},
        "seconds": round(result.seconds, 3),
        "fps": round(result.fps, 3),
        "flicker": result.flicker,
        "quality": result.quality,
        "engine": provenance.get("engine", vplan.plan.engine),
        "model": provenance.get("model"),
        "command": provenance.get("command"),
        "clip": vplan.clip.describe(),
        "output_size": list(vplan.output_size),
        "encoder": vplan.encoder.describe(),
        "temporal": vplan.options.temporal,
        "settings": vplan.settings.to_dict(),
        "setting_sources": dict(vplan.settings.sources),
        "notes": list(vplan.notes),
    }


def write_report(path: Path, vplan: VideoPlan, result: VideoResult) -> None:
    write_text_atomic(path, json.dumps(report_data(vplan, result), indent=2, default=str))
