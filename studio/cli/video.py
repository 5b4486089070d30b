"""`studio video`: one clip in, the restored clip out, with its sound, resumable.

The restore settings' options come from the same generator as `studio restore`'s (`setting_options`, from
the settings table), less the still-image file options (--format, --quality, --force-jpeg, --dpi, --alpha);
declared here are only the clip's own options (--codec, --crf, --temporal, --resume) and the run options.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from studio.cli.dry_run import print_settings
from studio.cli.interrupt import exit_after_interrupt
from studio.cli.restore import run_option, setting_options, settings_from_flags
from studio.settings import PANEL_OUTPUT
from studio.video.options import CODECS, DEFAULT_CRF, DEFAULT_TEMPORAL, IMAGE_ONLY_SETTINGS, VideoOptions

HELP = """Restore and upscale a video clip frame by frame; sound, subtitles and time stamps are kept.

[bold]Examples[/]

  studio video clip.mp4 --scale 2

  studio video clip.mp4 -o clip_x2.mkv --engine fast --scale 2 --codec ffv1

  studio video interview.mov --faces gfpgan --codec prores --temporal 0.7

Ctrl-C stops within about a second; the same command (or --resume) continues where it stopped.
"""

_VIDEO_OPTIONS = [
    run_option("codec", Optional[str], "--codec", help=f"{', '.join(CODECS)} (ffv1 is lossless). Default: h264."),
    run_option("crf", Optional[int], "--crf", help=f"h264/h265 quality, 0 (lossless) to 51. Default: {DEFAULT_CRF}."),
    run_option(
        "temporal",
        Optional[float],
        "--temporal",
        help=f"0-1: blend the previous output along the optical flow (0 = off). Default: {DEFAULT_TEMPORAL:g}.",
    ),
    run_option("resume", bool, "--resume", help="Continue an interrupted run; fail if there is nothing to continue."),
    run_option(
        "overwrite", bool, "--overwrite", help="Replace an existing output (never the clip).", panel=PANEL_OUTPUT
    ),
    run_option("report", Optional[Path], "--report", help="Write a JSON report here.", panel=PANEL_OUTPUT),
    run_option("config", Optional[Path], "--config", help="Settings file (TOML, a \\[restore] table)."),
    run_option("dry_run", bool, "--dry-run", help="Run every check, print the plan; write nothing."),
    run_option("debug", bool, "--debug", help="Show full tracebacks for errors (as `studio --debug`)."),
]
_RUN = ("output", "preset_dir", *(parameter.name for parameter in _VIDEO_OPTIONS))


def video(ctx: typer.Context, clip: Path, **flags: Any) -> None:
    """Check everything before the first frame, then print the plan (--dry-run) or restore the clip."""
    from studio.video.plan import plan_video

    run = {name: flags.pop(name, None) for name in _RUN}
    if run["debug"]:
        ctx.meta["studio.debug"] = True
    options = VideoOptions(
        codec=run["codec"] or VideoOptions.codec,
        crf=run["crf"],
        temporal=VideoOptions.temporal if run["temporal"] is None else run["temporal"],
        resume=bool(run["resume"]),
        overwrite=bool(run["overwrite"]),
        report=run["report"],
    )
    vplan = plan_video(
        settings_from_flags(flags),
        clip,
        Path(run["output"]) if run["output"] else None,
        options,
        config_file=run["config"],
        preset_dirs=list(run["preset_dir"] or []),
    )
    if run["dry_run"]:
        _print_plan(vplan)
    else:
        _run(vplan, bool(ctx.meta.get("studio.debug")))


def _print_plan(vplan: Any) -> None:
    import json

    from rich.console import Console

    console = Console(soft_wrap=True)
    print_settings(vplan.plan, console, IMAGE_ONLY_SETTINGS)
    console.print_json(json.dumps(vplan.describe(), default=str))
    console.print("[dim]dry run: nothing was written[/]")


def _run(vplan: Any, debug: bool) -> None:
    """Restore with a progress bar (frames, fps, ETA); notices once each; exit 130 after Ctrl-C."""
    import warnings

    from rich.console import Console

    from studio import messages
    from studio.video.report import write_report

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    seen: set[str] = set()

    def sink(level: str, text: str) -> None:
        if text not in seen:  # a per-frame notice (a fallback, a model choice) is said once per clip
            seen.add(text)
            console.print(f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True)

    messages.set_sink(sink)
    try:
        with _progress(console, vplan) as on_frame, warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            from studio.video.run import run_video

            result = run_video(vplan, on_frame)
    finally:
        messages.set_sink(None)
    if vplan.options.report is not None:
        write_report(vplan.options.report, vplan, result)
    if result.status == "interrupted":
        console.print(
            f"{result.frames_done} of {result.frames_total} frames are kept in the work folder; "
            "run the same command again (or add --resume) to continue"
        )
        exit_after_interrupt(console)
    flicker = result.flicker
    steadiness = (
        f", flicker {flicker['output']} vs Lanczos {flicker['lanczos']} (x{flicker['ratio']})"
        if flicker.get("pairs")
        else ""
    )
    console.print(
        f"[green]ok:[/] {vplan.clip.path} -> {vplan.output} ({vplan.output_size[0]}x{vplan.output_size[1]}, "
        f"{result.frames_total} frames, {result.fps:.2f} fps{steadiness})"
    )


class _progress:
    """A rich progress bar for the clip's frames with fps and ETA; entering it yields the frame callback."""

    def __init__(self, console: Any, vplan: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} fps"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task(vplan.clip.path.name, total=vplan.clip.frames, fps="-")
        self.started: tuple[float, int] | None = None

    def __enter__(self) -> Any:
        import time

        self.progress.__enter__()

        def on_frame(done: int, total: int) -> None:
            now = time.perf_counter()
            if self.started is None:
                self.started = (now, done - 1)
            began, first = self.started
            rate = (done - first) / (now - began) if now > began else 0.0
            self.progress.update(self.task, completed=done, fps=f"{rate:.2f}")

        return on_frame

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)


def video_signature() -> inspect.Signature:
    """`video`'s parameters for Typer: the clip, -o, the restore settings' options, then the clip's options."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    clip = Annotated[Path, typer.Argument(help="The video file (mp4, mov, mkv, webm, avi...).")]
    parameters = [
        inspect.Parameter("ctx", positional, annotation=typer.Context),
        inspect.Parameter("clip", positional, annotation=clip),
        run_option(
            "output",
            Optional[str],
            "-o",
            "--output",
            help="Output file (.mp4, .mov, .mkv). Default: CLIP_restored with the clip's container.",
        ),
    ]
    return inspect.Signature(parameters + setting_options(IMAGE_ONLY_SETTINGS) + _VIDEO_OPTIONS)


video.__signature__ = video_signature()  # type: ignore[attr-defined]
