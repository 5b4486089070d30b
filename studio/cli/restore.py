"""`studio restore`: files and folders in, restored images out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

HELP = """Restore and upscale images.

[bold]Examples[/]

  studio restore old_photo.jpg

  studio restore old_photo.jpg --engine sd-x4 --preset old-photo --prompt "a family at the beach, 1950s"

  studio restore a.jpg b.png shots/ -o out/ --report out/report.json

  studio restore photo.jpg --engine classical --scale 3 --format tiff -o big.tif

  studio restore portrait.jpg --faces codeformer --face-fidelity 0.7
"""

ENGINE_HELP = "auto, classical, fast, sd-x4 (auto: sd-x4 with a GPU and its weights, else fast)."
_PANEL_DIFFUSION = "Diffusion"
_PANEL_FACES = "Faces"
_PANEL_OUTPUT = "Output"


def restore(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Image files and folders (folders are searched recursively).")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Output file (one input) or folder (several inputs, or a trailing /).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help=ENGINE_HELP)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Weights name, file, folder or hub id.")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Output scale, fractional allowed. Default: 4.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="Prompt preset (studio presets list).")] = None,
    preset_dir: Annotated[Optional[list[Path]], typer.Option("--preset-dir", help="Extra preset folder (repeatable).")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="What the image shows; steers diffusion.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    negative_prompt: Annotated[Optional[str], typer.Option("--negative-prompt", help="What to avoid.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    var: Annotated[Optional[list[str]], typer.Option("--var", help="Preset variable KEY=VALUE (repeatable).", rich_help_panel=_PANEL_DIFFUSION)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (recorded in the output).", rich_help_panel=_PANEL_DIFFUSION)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Denoising steps. Default: 25.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="Classifier-free guidance. Default: 4.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    noise_level: Annotated[Optional[int], typer.Option("--noise-level", help="SD x4 noise level 0-350. Default: 20 (or from --strength).", rich_help_panel=_PANEL_DIFFUSION)] = None,
    fidelity: Annotated[Optional[float], typer.Option("--fidelity", help="0-1: blend the result toward a Lanczos upscale of the input (1 = Lanczos). Default: the result as is.")] = None,
    strength: Annotated[Optional[float], typer.Option("--strength", help="0-1: how much a diffusion engine may re-invent (sd-x4: sets the noise level). Default: 0.5.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="ddim, dpm++, euler, euler-a, pndm, ddpm, unipc.", rich_help_panel=_PANEL_DIFFUSION)] = None,
    color_fix: Annotated[Optional[str], typer.Option("--color-fix", help="none, wavelet, wavelet-dwt, adain, histogram, lab (default: wavelet for diffusion, else none).")] = None,
    faces: Annotated[Optional[str], typer.Option("--faces", help="none, gfpgan, codeformer, restoreformer.", rich_help_panel=_PANEL_FACES)] = None,
    face_model: Annotated[Optional[str], typer.Option("--face-model", help="Face weights name or file.", rich_help_panel=_PANEL_FACES)] = None,
    face_fidelity: Annotated[Optional[float], typer.Option("--face-fidelity", help="0-1: higher keeps more of the original face.", rich_help_panel=_PANEL_FACES)] = None,
    only_center_face: Annotated[Optional[bool], typer.Option("--only-center-face/--no-only-center-face", help="Restore only the most central face.", rich_help_panel=_PANEL_FACES)] = None,
    max_faces: Annotated[Optional[int], typer.Option("--max-faces", help="Restore at most this many (largest first).", rich_help_panel=_PANEL_FACES)] = None,
    tile: Annotated[Optional[int], typer.Option("--tile", help="Tile size in pixels; 0 = off; default: from free memory.")] = None,
    tile_overlap: Annotated[Optional[int], typer.Option("--tile-overlap", help="Pixels (of the input) neighbouring tiles share. Default: 32.")] = None,
    alpha: Annotated[Optional[str], typer.Option("--alpha", help="Alpha upscaling: bicubic or model.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="png, jpg, webp, tiff (default: png, or -o's extension).", rich_help_panel=_PANEL_OUTPUT)] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", help="JPEG quality (95+ unless --force-jpeg).", rich_help_panel=_PANEL_OUTPUT)] = None,
    dpi: Annotated[Optional[float], typer.Option("--dpi", help="Print resolution of the output (default: the input's, scaled to keep the print size).", rich_help_panel=_PANEL_OUTPUT)] = None,
    force_jpeg: Annotated[Optional[bool], typer.Option("--force-jpeg/--no-force-jpeg", help="Allow JPEG quality below 95.", rich_help_panel=_PANEL_OUTPUT)] = None,
    sidecar: Annotated[Optional[bool], typer.Option("--sidecar/--no-sidecar", help="Also write OUTPUT.json with the provenance.", rich_help_panel=_PANEL_OUTPUT)] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Keep outputs that exist (resume a batch).", rich_help_panel=_PANEL_OUTPUT)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).", rich_help_panel=_PANEL_OUTPUT)] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a JSON report here (default for batches: in the output folder).", rich_help_panel=_PANEL_OUTPUT)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the fast engine (default: every physical core).")] = None,
    offload: Annotated[Optional[str], typer.Option("--offload", help="none, model, sequential (diffusion on small GPUs).")] = None,
    fallback: Annotated[Optional[str], typer.Option("--fallback", help="Engine to use when the chosen one cannot run: fast, classical, none.")] = None,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", help="Refuse inputs above this many pixels.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (TOML, a \\[restore] table).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every check, print the plan; write nothing.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors (as `studio --debug`).")] = False,
) -> None:
    if debug:
        ctx.meta["studio.debug"] = True  # click shares meta with the group, which reads it on errors
    from studio.cli.options import parse_vars
    from studio.errors import UsageError
    from studio.imageio import SUPPORTED_EXTENSIONS, WRITABLE_EXTENSIONS, output_format
    from studio.runner import plan_run

    output_is_folder = output is not None and output.endswith(("/", os.sep))
    output = Path(output) if output is not None else None
    if output is not None and output.suffix.lower() in SUPPORTED_EXTENSIONS:
        if output.suffix.lower() not in WRITABLE_EXTENSIONS:
            raise UsageError(f"-o {output}: studio writes png, jpg, webp or tiff, not {output.suffix}")
        implied = output_format(output, None)
        if fmt is not None and fmt != implied:
            raise UsageError(f"-o {output} looks like {implied.upper()} but --format is {fmt}; make them agree")
        fmt = implied
    cli: dict[str, Any] = {
        "engine": engine, "model": model, "scale": scale, "preset": preset, "prompt": prompt,
        "negative_prompt": negative_prompt, "variables": parse_vars(var) or None, "seed": seed, "steps": steps,
        "guidance": guidance, "noise_level": noise_level, "fidelity": fidelity, "strength": strength,
        "scheduler": scheduler, "color_fix": color_fix, "faces": faces, "face_model": face_model,
        "face_fidelity": face_fidelity, "only_center_face": only_center_face, "max_faces": max_faces,
        "tile": tile, "tile_overlap": tile_overlap, "alpha": alpha, "format": fmt, "quality": quality, "dpi": dpi, "force_jpeg": force_jpeg, "sidecar": sidecar,
        "device": device, "threads": threads, "offload": offload, "fallback": fallback, "max_pixels": max_pixels,
    }
    plan = plan_run(cli, list(inputs), output, output_is_folder=output_is_folder, report=report, overwrite=overwrite,
                    skip_existing=skip_existing, config_file=config, preset_dirs=list(preset_dir or []))
    if dry_run:
        if _print_plan(plan, skip_existing):
            raise typer.Exit(1)  # the real run would fail these files: same exit code
        return
    _run(plan, skip_existing, overwrite, bool(ctx.meta.get("studio.debug")))


def _print_plan(plan: Any, skip_existing: bool) -> int:
    """--dry-run: the resolved settings with their sources, then per input the engine's plan.

    Returns how many files the real run would fail (unreadable input, output in the way).
    """
    import json

    from rich.console import Console

    from studio.engines import engine_class
    from studio.errors import StudioError
    from studio.imageio import read_image

    settings = plan.settings
    console = Console(soft_wrap=True)
    console.print("[bold]Resolved settings[/] (value, and the layer it came from)")
    for key, value in settings.to_dict().items():
        console.print(f"  {key} = {value!r}  [dim]({settings.source_of(key)})[/]", markup=True, highlight=False)
    engine = engine_class(plan.engine)(settings)
    reason = engine.availability(settings).reason
    console.print(f"engine: [bold]{plan.engine}[/] (available{': ' + reason if reason else ''})")
    for note in plan.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    failures = 0
    for job in plan.jobs:
        try:
            if job.error:
                raise StudioError(job.error)
            if skip_existing and job.output.exists():
                console.print_json(json.dumps({"input": str(job.source), "skip": "output exists (--skip-existing)"}))
                continue
            picture = read_image(job.source, settings.max_pixels)
            height, width = picture.rgb.shape[:2]
            step = {"input": str(job.source), "output": str(job.output), "input_size": [width, height],
                    **engine.plan(height, width, settings.scale)}
            if picture.alpha is not None:
                step["alpha"] = f"kept, upscaled by {settings.alpha}"
            if picture.bit_depth == 16:
                step["bit_depth"] = 16
        except StudioError as exc:
            failures += 1
            step = {"input": str(job.source), "error": str(exc)}
        console.print_json(json.dumps(step, default=str))
    if plan.report is not None:
        console.print(f"report: {plan.report}", markup=False, highlight=False)
    console.print("[dim]dry run: nothing was written[/]")
    return failures


def _run(plan: Any, skip_existing: bool, overwrite: bool, debug: bool) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from studio import messages
    from studio.runner import run_batch, write_report

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    messages.set_sink(lambda level, text: console.print(
        f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True))
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    )
    batch_task = progress.add_task("images", total=len(plan.jobs))
    image_task = progress.add_task("", total=1, visible=False)

    def on_job_start(job, index, total):
        progress.update(image_task, description=job.source.name, completed=0, total=1, visible=True)

        def step(done: int, total_steps: int) -> None:
            progress.update(image_task, completed=done, total=total_steps)

        return step

    def on_job_done(result) -> None:
        progress.advance(batch_task)
        if result.status == "failed":
            console.print(f"[red]failed:[/] {result.error}")
        elif result.status == "skipped":
            console.print(f"[dim]skipped:[/] {result.input} (output exists)")
        else:
            console.print(f"[green]ok:[/] {result.input} -> {result.output} "
                          f"({result.output_size[0]}x{result.output_size[1]}, {result.engine}, {result.seconds:.1f} s)")

    try:
        with progress:
            batch = run_batch(plan, skip_existing, overwrite, on_job_start, on_job_done, debug)
    finally:
        messages.set_sink(None)
    if plan.report is not None:
        write_report(plan.report, batch)
    summary = batch.summary()
    if plan.report is not None:
        summary += f"; report: {plan.report}"
    console.print(summary)
    if batch.interrupted:
        console.print("[red]interrupted[/] (Ctrl-C): finished files are kept, the rest were not started")
        _exit_now_if_native_work_is_abandoned(130)
        raise typer.Exit(130)
    if batch.failed:
        raise typer.Exit(1)


def _exit_now_if_native_work_is_abandoned(code: int) -> None:
    """After Ctrl-C an abandoned native call (an ncnn tile) may still run in a worker thread, and the
    normal interpreter shutdown would wait seconds for it: the report is written, so leave at once."""
    import sys

    from studio.native import abandoned

    if abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
