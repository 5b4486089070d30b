"""Restoring a clip: decode -> the restore recipe per frame (models loaded once) -> temporal blend -> encode.

Each frame goes through `restore_picture`, the very recipe `studio restore` runs on a photo (engine with its
fallback, fidelity, faces, colour fix), with one EngineCache for the whole clip, so models load once and
diffusion engines use the same seed for every frame. The fast engine's content choice is made on the first
frame and kept for the rest, so the model never switches mid-clip. Frames stream: the decoder runs a few
frames ahead, the encoder a few behind, and nothing holds the whole clip. Ctrl-C leaves the work folder
(workdir.py) from which the same command continues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from studio.engines import engine_class
from studio.io import Picture, write_text_atomic
from studio.messages import notice
from studio.ops.resize import resize
from studio.runner import EngineCache, reproduce_command, restore_picture, sidecar_path
from studio.runner.choice import engine_settings
from studio.video.codecs import coded_size
from studio.video.encode import Finished, SegmentEncoder
from studio.video.frames import decode_frames, dequantise, quantise
from studio.video.mux import write_output
from studio.video.plan import VideoPlan
from studio.video.temporal import FlickerMeter, blend_previous, estimate_motion
from studio.video.workdir import WorkFolder

FrameProgress = Callable[[int, int], None]
"""on_frame(frames done, frames in the clip)."""
PINNED_SOURCE = "first frame"
"""The source recorded for a model chosen by content on the first frame and kept for the clip."""


@dataclass
class VideoResult:
    """What a run did: finished or interrupted, how far, how fast, and the clip's figures."""

    status: str  # ok | interrupted
    frames_done: int
    frames_total: int
    frames_this_run: int
    seconds: float
    flicker: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_this_run / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Previous:
    """The last finished frame: its input, its output as encoded, and its Lanczos upscale (for the measure)."""

    source: np.ndarray
    output: np.ndarray
    lanczos: np.ndarray


def run_video(vplan: VideoPlan, on_frame: FrameProgress | None = None) -> VideoResult:
    """Restore the clip of a checked plan into its output, continuing earlier work of the same command."""
    started = time.perf_counter()
    work = WorkFolder(vplan.output, vplan.options.segment_frames)
    manifest = {"fingerprint": vplan.fingerprint(), "seed": vplan.settings.seed, "frames": vplan.clip.frames}
    resume = work.start(manifest)
    if resume.next_frame:
        notice(f"continuing {vplan.output.name} from frame {resume.next_frame + 1} of {vplan.clip.frames}")
        earlier = work.manifest() or {}
        if vplan.settings.source_of("seed") == "random" and earlier.get("seed") is not None:
            vplan.plan.settings = replace(vplan.settings, seed=earlier["seed"])
    cache = EngineCache(vplan.settings, vplan.plan.engine)
    first = _stored_provenance(work)
    if first is not None:
        _pin(cache, first)
    meter = FlickerMeter()
    for item in resume.stats:
        if item.get("flicker"):
            meter.record(*item["flicker"])
    out_w, out_h = vplan.output_size
    encoder = SegmentEncoder(work, vplan.encoder, vplan.clip, coded_size(vplan.clip, (out_w, out_h)))
    encoder.start([(index, resume.stats[index]["pts"]) for index in resume.kept])
    stats = list(resume.stats)
    done = resume.next_frame
    try:
        previous: _Previous | None = None
        for frame in decode_frames(vplan.clip, resume.next_frame):
            lanczos = resize(frame.rgb, out_h, out_w, "lanczos")
            if frame.index < resume.next_frame:  # the frame before a resume: the temporal reference
                previous = _Previous(frame.rgb, dequantise(work.load_frame(frame.index)), lanczos)
                continue
            restored = restore_picture(Picture(rgb=frame.rgb), cache, cache.primary, None, vplan.notes)
            if first is None:
                first = restored.provenance
                (work.path / "provenance.json").write_text(json.dumps(first, default=str), encoding="utf-8")
                _pin(cache, first)
            item: dict[str, Any] = {"i": frame.index, "pts": frame.pts, "psnr": restored.quality["psnr_vs_lanczos_db"]}
            output = restored.picture.rgb
            if previous is not None:
                motion = estimate_motion(previous.source, frame.rgb, out_h, out_w)
                output = blend_previous(output, previous.output, motion, vplan.options.temporal)
            pixels = quantise(output, vplan.clip)
            encoded = dequantise(pixels)
            if previous is not None:
                item["flicker"] = meter.add(motion, (previous.output, encoded), (previous.lanczos, lanczos))
            encoder.put(Finished(frame.index, frame.pts, pixels, item))
            stats.append(item)
            previous = _Previous(frame.rgb, encoded, lanczos)
            done = frame.index + 1
            if on_frame:
                on_frame(done, vplan.clip.frames)
        encoder.finish()
    except KeyboardInterrupt:
        encoder.abandon()
        seconds = time.perf_counter() - started
        return VideoResult("interrupted", done, vplan.clip.frames, done - resume.next_frame, seconds)
    seconds = time.perf_counter() - started
    result = VideoResult("ok", done, vplan.clip.frames, done - resume.next_frame, seconds, meter.summary())
    result.quality = _quality(stats)
    result.provenance = _provenance(vplan, cache, first or {}, result)
    write_output(vplan.output, work.segments(), vplan.clip, result.provenance)
    if vplan.settings.sidecar:
        write_text_atomic(sidecar_path(vplan.output), json.dumps(result.provenance, indent=2, default=str))
    work.remove()
    return result


def _stored_provenance(work: WorkFolder) -> dict[str, Any] | None:
    try:
        return json.loads((work.path / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pin(cache: EngineCache, first: dict[str, Any]) -> None:
    """Keep the model the primary engine chose on the first frame (when nothing named one) for every frame."""
    settings = cache.settings
    if settings.model is None and not settings.ensemble and first.get("engine") == cache.primary and first.get("model"):
        cache.pin_model(first["model"], PINNED_SOURCE)


def _quality(stats: list[dict[str, Any]]) -> dict[str, Any]:
    values = [item["psnr"] for item in stats if item.get("psnr") is not None]
    return {"psnr_vs_lanczos_db_mean": round(float(np.mean(values)), 2) if values else None, "frames": len(stats)}


def _provenance(vplan: VideoPlan, cache: EngineCache, first: dict[str, Any], result: VideoResult) -> dict[str, Any]:
    """The first frame's record (engine, model, hashes, settings: the same for every frame) plus the clip's."""
    ran = engine_class(first.get("engine", cache.primary))
    ran_settings = replace(engine_settings(cache.settings, ran.name, cache.primary), engine=ran.name)
    command = reproduce_command(vplan.clip.path, vplan.output, ran_settings, ran, "video", vplan.options.command_args())
    return {
        **first,
        "settings": {**first.get("settings", {}), "model": cache.settings.model},
        "setting_sources": cache.settings.sources,
        "command": command,
        "input": {"name": vplan.clip.path.name, **vplan.clip.describe()},
        "output_size": list(vplan.output_size),
        "video": {
            "encoder": vplan.encoder.describe(),
            "temporal": vplan.options.temporal,
            "frames": result.frames_total,
            "flicker": result.flicker,
            "quality": result.quality,
        },
    }
