"""Everything about a video run that can be known before the first pixel, checked with `studio restore`'s checks.

The settings, preset, engine (with its fallback), face weights and licence notices go through the runner's
own `prepare_settings`, `settle_engine` and `check_faces`: one declaration, the same verdicts. Then the
clip itself (probe.py), the encoder and container (codecs.py), the output path, the report and the
sidecar. `--dry-run` calls this same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engines.base import output_size
from studio.errors import UsageError
from studio.io import InputSet, check_output_path
from studio.runner import Plan, check_report_path, prepare_settings, sidecar_path
from studio.runner.plan import check_faces, settle_engine
from studio.settings import Settings
from studio.version import __version__
from studio.video.codecs import EncoderSpec, check_container, container_format, encoder_spec
from studio.video.options import VideoOptions
from studio.video.probe import ClipInfo, probe_clip
from studio.video.workdir import WorkFolder, fingerprint, work_folder


@dataclass
class VideoPlan:
    """A checked video run: the restore plan (settings, engine, notes), the clip, the encoder and the paths."""

    plan: Plan
    clip: ClipInfo
    output: Path
    encoder: EncoderSpec
    options: VideoOptions
    output_size: tuple[int, int]  # (width, height), display orientation
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.plan.settings

    def fingerprint(self) -> str:
        """What makes two runs the same run: only such a rerun continues the work folder."""
        settings = self.settings.to_dict()
        if self.settings.source_of("seed") == "random":
            settings.pop("seed")  # a rerun draws another; the work folder's seed is taken instead
        stat = self.clip.path.stat()
        return fingerprint(
            {
                "input": [str(self.clip.path.resolve()), stat.st_size, stat.st_mtime_ns],
                "settings": settings,
                "engine": self.plan.engine,
                "encoder": self.encoder.describe(),
                "temporal": self.options.temporal,
                "segment_frames": self.options.segment_frames,
                "studio_version": __version__,
            }
        )

    def describe(self) -> dict[str, Any]:
        """For --dry-run: what would be read, made and written."""
        return {
            "input": str(self.clip.path),
            "output": str(self.output),
            "clip": self.clip.describe(),
            "output_size": list(self.output_size),
            "encoder": self.encoder.describe(),
            "temporal": self.options.temporal,
            "work_folder": str(work_folder(self.output)),
            "resumes": work_folder(self.output).exists(),
        }


def default_output(source: Path) -> Path:
    """`clip_restored.mp4` next to the clip (the source's container when studio writes it, else MP4)."""
    suffix = source.suffix.lower()
    try:
        container_format(Path("x" + suffix))
    except UsageError:
        suffix = ".mp4"
    return source.with_name(f"{source.stem}_restored{suffix}")


def plan_video(
    cli: dict[str, Any],
    source: Path,
    output: Path | None,
    options: VideoOptions,
    *,
    config_file: Path | None = None,
    preset_dirs: list[Path] | None = None,
) -> VideoPlan:
    """Resolve and check everything before the first frame is decoded; raises the error the run would."""
    if not 0.0 <= options.temporal <= 1.0:
        raise UsageError(f"--temporal {options.temporal:g}: expected a value from 0 (off) to 1")
    settings, engine = prepare_settings(cli, config_file, preset_dirs)
    plan = Plan(settings, engine)
    settle_engine(plan)
    check_faces(plan)
    output = output or default_output(source)
    container_format(output)
    clip = probe_clip(source)
    out_h, out_w = output_size(clip.height, clip.width, plan.settings.scale)
    if clip.rotation % 180:
        out_h, out_w = output_size(clip.width, clip.height, plan.settings.scale)
    spec = encoder_spec(options.codec, options.crf, clip)
    check_container(output, spec, clip, (out_w, out_h))
    inputs = InputSet([source])
    check_output_path(output, inputs, options.overwrite)
    if plan.settings.sidecar:
        check_output_path(sidecar_path(output), inputs, options.overwrite)
    if options.report is not None:
        check_report_path(options.report, [source], options.overwrite)
    vplan = VideoPlan(plan, clip, output, spec, options, (out_w, out_h), list(plan.notes))
    if options.resume:
        WorkFolder(output, options.segment_frames).check_resumable(vplan.fingerprint())
    return vplan
