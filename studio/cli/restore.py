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

  studio restore scan.jpg --task jpeg --scale 1

  studio restore photo.jpg --model realesrgan-x4plus --model swinir-m-x4-realsr --blend 0.6,0.4
"""

ENGINE_HELP = "auto, classical, fast, sd-x4, stablesr (auto: a diffusion engine with a GPU and its weights, else fast)."
_PANEL_DIFFUSION = "Diffusion"
_PANEL_FACES = "Faces"
_PANEL_OUTPUT = "Output"


def restore(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Image files and folders (folders are searched recursively).")],
    output: Annotated[
        Optional[str],
        typer.Option("-o", "--output", help="Output file (one input) or folder (several inputs, or a trailing /)."),
    ] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help=ENGINE_HELP)] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            "--model", "-m", help="Weights name, file, folder or hub id; give it again for an ensemble (fast engine)."
        ),
    ] = None,
    blend: Annotated[
        Optional[str],
        typer.Option(
            "--blend",
            help=(
                "Ensemble weights, one per --model, e.g. 0.6,0.4 (averaged in linear light; normalised "
                "to sum 1). Default: equal."
            ),
        ),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option(
            "--task",
            help=(
                "sr (enlarge), jpeg (remove JPEG artefacts) or denoise; jpeg/denoise clean at the "
                "original size with SwinIR first. Default: sr."
            ),
        ),
    ] = None,
    scale: Annotated[
        Optional[float], typer.Option("--scale", "-s", help="Output scale, fractional allowed. Default: 4.")
    ] = None,
    preset: Annotated[
        Optional[str], typer.Option("--preset", "-p", help="Prompt preset (studio presets list).")
    ] = None,
    preset_dir: Annotated[
        Optional[list[Path]], typer.Option("--preset-dir", help="Extra preset folder (repeatable).")
    ] = None,
    prompt: Annotated[
        Optional[str],
        typer.Option("--prompt", help="What the image shows; steers diffusion.", rich_help_panel=_PANEL_DIFFUSION),
    ] = None,
    negative_prompt: Annotated[
        Optional[str], typer.Option("--negative-prompt", help="What to avoid.", rich_help_panel=_PANEL_DIFFUSION)
    ] = None,
    var: Annotated[
        Optional[list[str]],
        typer.Option("--var", help="Preset variable KEY=VALUE (repeatable).", rich_help_panel=_PANEL_DIFFUSION),
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option("--seed", help="Random seed (recorded in the output).", rich_help_panel=_PANEL_DIFFUSION),
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option("--steps", help="Denoising steps. Default: 25.", rich_help_panel=_PANEL_DIFFUSION)
    ] = None,
    guidance: Annotated[
        Optional[float],
        typer.Option("--guidance", help="Classifier-free guidance. Default: 4.", rich_help_panel=_PANEL_DIFFUSION),
    ] = None,
    noise_level: Annotated[
        Optional[int],
        typer.Option(
            "--noise-level",
            help="SD x4 noise level 0-350. Default: 20 (or from --strength).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    fidelity: Annotated[
        Optional[float],
        typer.Option(
            "--fidelity",
            help=(
                "0-1: blend the result toward a Lanczos upscale of the input (1 = Lanczos). Default: the result as is."
            ),
        ),
    ] = None,
    strength: Annotated[
        Optional[float],
        typer.Option(
            "--strength",
            help="0-1: how much a diffusion engine may re-invent (sd-x4: sets the noise level). Default: 0.5.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            help="ddim, dpm++, euler, euler-a, pndm, ddpm, unipc; supir: edm-euler, dpm++-2m-karras.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    adapter: Annotated[
        Optional[str],
        typer.Option(
            "--adapter",
            help="ControlNet folder or hub id, or an official StableSR/SUPIR checkpoint (detected by its keys).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    adapter_scale: Annotated[
        Optional[float],
        typer.Option(
            "--adapter-scale",
            help="0-2: ControlNet conditioning / SPADE modulation scale. Default: 1 (or from --fidelity).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    denoise: Annotated[
        Optional[float],
        typer.Option(
            "--denoise",
            help="0-1: fraction of the schedule run from the noised stage-1 latent (1 = from the last timestep).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    pull: Annotated[
        Optional[float],
        typer.Option(
            "--pull",
            help="0-1: per-step pull of the predicted clean latent toward the stage-1 latent (0 = off).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    cfw: Annotated[
        Optional[float],
        typer.Option(
            "--cfw",
            help="0-1: StableSR CFW weight (0 = plain decoder, 1 = follow the input); needs the CFW weights.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    stage1: Annotated[
        Optional[str],
        typer.Option(
            "--stage1",
            help="fast, lanczos, none: how the input reaches the output size before it conditions the model.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    restore_tau: Annotated[
        Optional[float],
        typer.Option(
            "--restore-tau",
            help=(
                "SUPIR restoration guidance exponent (0 = follow the input, higher = freer; negative = "
                "off). Default: from --strength."
            ),
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    cfg_start: Annotated[
        Optional[float],
        typer.Option(
            "--cfg-start",
            help="CFG at the highest noise, linear to --guidance at the lowest (supir). Default: from --strength.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    adapter_scale_start: Annotated[
        Optional[float],
        typer.Option(
            "--adapter-scale-start",
            help="Control scale at the highest noise, linear to --adapter-scale (supir). Default: constant.",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    churn: Annotated[
        Optional[float],
        typer.Option(
            "--churn", help="EDM churn: noise re-added per step (supir). Default: 5.", rich_help_panel=_PANEL_DIFFUSION
        ),
    ] = None,
    s_noise: Annotated[
        Optional[float],
        typer.Option(
            "--s-noise", help="EDM churn noise scale (supir). Default: 1.003.", rich_help_panel=_PANEL_DIFFUSION
        ),
    ] = None,
    dtype: Annotated[
        Optional[str],
        typer.Option(
            "--dtype",
            help=(
                "fp16, bf16, fp32: diffusion precision (supir; the VAE runs bf16/fp32). Default: fp16 on "
                "CUDA, fp32 on CPU."
            ),
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    min_side: Annotated[
        Optional[int],
        typer.Option(
            "--min-side",
            help=(
                "Diffuse with the short side at least this many pixels, then resize to the output "
                "(supir; 0 = at the output size). Default: 1024."
            ),
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    caption: Annotated[
        Optional[bool],
        typer.Option(
            "--caption/--no-caption",
            help="Fill {caption} in the prompt from an image captioner (supir).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    caption_model: Annotated[
        Optional[str],
        typer.Option(
            "--caption-model",
            help="transformers image-to-text model for --caption (hub id or folder).",
            rich_help_panel=_PANEL_DIFFUSION,
        ),
    ] = None,
    color_fix: Annotated[
        Optional[str],
        typer.Option(
            "--color-fix",
            help="none, wavelet, wavelet-dwt, adain, histogram, lab (default: wavelet for diffusion, else none).",
        ),
    ] = None,
    faces: Annotated[
        Optional[str],
        typer.Option("--faces", help="none, gfpgan, codeformer, restoreformer.", rich_help_panel=_PANEL_FACES),
    ] = None,
    face_model: Annotated[
        Optional[str], typer.Option("--face-model", help="Face weights name or file.", rich_help_panel=_PANEL_FACES)
    ] = None,
    face_fidelity: Annotated[
        Optional[float],
        typer.Option(
            "--face-fidelity", help="0-1: higher keeps more of the original face.", rich_help_panel=_PANEL_FACES
        ),
    ] = None,
    only_center_face: Annotated[
        Optional[bool],
        typer.Option(
            "--only-center-face/--no-only-center-face",
            help="Restore only the most central face.",
            rich_help_panel=_PANEL_FACES,
        ),
    ] = None,
    max_faces: Annotated[
        Optional[int],
        typer.Option("--max-faces", help="Restore at most this many (largest first).", rich_help_panel=_PANEL_FACES),
    ] = None,
    tile: Annotated[
        Optional[int],
        typer.Option(
            "--tile",
            help="Tile size in pixels of the image the model reads (the input; for stablesr and supir the "
            "stage-1 image); 0 = off; default: from free memory.",
        ),
    ] = None,
    tile_overlap: Annotated[
        Optional[int],
        typer.Option("--tile-overlap", help="Pixels (same unit as --tile) neighbouring tiles share. Default: 32."),
    ] = None,
    alpha: Annotated[Optional[str], typer.Option("--alpha", help="Alpha upscaling: bicubic or model.")] = None,
    fmt: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            "-f",
            help="png, jpg, webp, tiff (default: png, or -o's extension).",
            rich_help_panel=_PANEL_OUTPUT,
        ),
    ] = None,
    quality: Annotated[
        Optional[int],
        typer.Option("--quality", help="JPEG quality (95+ unless --force-jpeg).", rich_help_panel=_PANEL_OUTPUT),
    ] = None,
    dpi: Annotated[
        Optional[float],
        typer.Option(
            "--dpi",
            help="Print resolution of the output (default: the input's, scaled to keep the print size).",
            rich_help_panel=_PANEL_OUTPUT,
        ),
    ] = None,
    force_jpeg: Annotated[
        Optional[bool],
        typer.Option(
            "--force-jpeg/--no-force-jpeg", help="Allow JPEG quality below 95.", rich_help_panel=_PANEL_OUTPUT
        ),
    ] = None,
    sidecar: Annotated[
        Optional[bool],
        typer.Option(
            "--sidecar/--no-sidecar", help="Also write OUTPUT.json with the provenance.", rich_help_panel=_PANEL_OUTPUT
        ),
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing", help="Keep outputs that exist (resume a batch).", rich_help_panel=_PANEL_OUTPUT
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace existing outputs (never inputs).", rich_help_panel=_PANEL_OUTPUT),
    ] = False,
    report: Annotated[
        Optional[Path],
        typer.Option(
            "--report",
            help="Write a JSON report here (default for batches: in the output folder).",
            rich_help_panel=_PANEL_OUTPUT,
        ),
    ] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps.")] = None,
    threads: Annotated[
        Optional[int], typer.Option("--threads", help="CPU threads for the fast engine (default: every physical core).")
    ] = None,
    offload: Annotated[
        Optional[str],
        typer.Option(
            "--offload",
            help="encoders (default: text encoders in RAM between prompts), none, model, sequential "
            "(diffusion on small GPUs).",
        ),
    ] = None,
    fallback: Annotated[
        Optional[str],
        typer.Option("--fallback", help="Engine to use when the chosen one cannot run: fast, classical, none."),
    ] = None,
    max_pixels: Annotated[
        Optional[int], typer.Option("--max-pixels", help="Refuse inputs above this many pixels.")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="Settings file (TOML, a \\[restore] table).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every check, print the plan; write nothing.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors (as `studio --debug`).")
    ] = False,
) -> None:
    if debug:
        ctx.meta["studio.debug"] = True  # click shares meta with the group, which reads it on errors
    from studio.cli.options import parse_blend, parse_vars
    from studio.errors import UsageError
    from studio.io import SUPPORTED_EXTENSIONS, WRITABLE_EXTENSIONS, output_format
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
    models = list(model or [])
    cli: dict[str, Any] = {
        "engine": engine,
        "model": models[0] if models else None,
        "ensemble": models if len(models) > 1 else None,
        "blend": parse_blend(blend),
        "task": task,
        "scale": scale,
        "preset": preset,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "variables": parse_vars(var) or None,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "noise_level": noise_level,
        "fidelity": fidelity,
        "strength": strength,
        "scheduler": scheduler,
        "adapter": adapter,
        "adapter_scale": adapter_scale,
        "denoise": denoise,
        "pull": pull,
        "cfw": cfw,
        "stage1": stage1,
        "restore_tau": restore_tau,
        "cfg_start": cfg_start,
        "adapter_scale_start": adapter_scale_start,
        "churn": churn,
        "s_noise": s_noise,
        "dtype": dtype,
        "min_side": min_side,
        "caption": caption,
        "caption_model": caption_model,
        "color_fix": color_fix,
        "faces": faces,
        "face_model": face_model,
        "face_fidelity": face_fidelity,
        "only_center_face": only_center_face,
        "max_faces": max_faces,
        "tile": tile,
        "tile_overlap": tile_overlap,
        "alpha": alpha,
        "format": fmt,
        "quality": quality,
        "dpi": dpi,
        "force_jpeg": force_jpeg,
        "sidecar": sidecar,
        "device": device,
        "threads": threads,
        "offload": offload,
        "fallback": fallback,
        "max_pixels": max_pixels,
    }
    plan = plan_run(
        cli,
        list(inputs),
        output,
        output_is_folder=output_is_folder,
        report=report,
        overwrite=overwrite,
        skip_existing=skip_existing,
        config_file=config,
        preset_dirs=list(preset_dir or []),
    )
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
    from studio.io import read_image

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
            step = {
                "input": str(job.source),
                "output": str(job.output),
                "input_size": [width, height],
                **engine.plan(height, width, settings.scale),
            }
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
    import dataclasses
    import warnings

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
    from studio.runner.distributed import current_share

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    share = current_share()  # under `accelerate launch`: this process's part of the batch
    all_jobs = plan.jobs
    plan = dataclasses.replace(plan, jobs=share.select(plan.jobs))
    messages.set_sink(
        lambda level, text: console.print(
            f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True
        )
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
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
            console.print(
                f"[green]ok:[/] {result.input} -> {result.output} "
                f"({result.output_size[0]}x{result.output_size[1]}, {result.engine}, {result.seconds:.1f} s)"
            )

    try:
        with progress, warnings.catch_warnings():
            if not debug:  # third-party warnings (torch, diffusers...) are for developers: shown with --debug
                warnings.simplefilter("ignore")
            batch = run_batch(plan, skip_existing, overwrite, on_job_start, on_job_done, debug)
    finally:
        messages.set_sink(None)
    if share.distributed:
        failed = _finish_distributed(batch, share, all_jobs, plan.report, console)
    else:
        if plan.report is not None:
            write_report(plan.report, batch)
        summary = batch.summary()
        if plan.report is not None:
            summary += f"; report: {plan.report}"
        console.print(summary)
        failed = bool(batch.failed)
    if batch.interrupted:
        console.print("[red]interrupted[/] (Ctrl-C): finished files are kept, the rest were not started")
        _exit_now_if_native_work_is_abandoned(130)
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def _finish_distributed(batch: Any, share: Any, all_jobs: list, report_path: Path | None, console: Any) -> bool:
    """Every process reports its own files; the main process writes the merged report and says the totals.

    Returns whether any file failed (in this process, or anywhere for the main process)."""
    import json

    from studio.io import write_text_atomic
    from studio.runner.distributed import gather_report

    console.print(f"process {share.index + 1}/{share.count}: {batch.succeeded}/{len(batch.results)} succeeded")
    merged = gather_report(batch.to_json(), share, [str(job.source) for job in all_jobs])
    if not share.is_main:
        return bool(batch.failed)
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(merged, indent=2, default=str))
    totals = merged["summary"]
    summary = f"{totals['succeeded']}/{totals['total']} succeeded over {share.count} processes"
    if totals["failed"]:
        summary += f", {totals['failed']} failed"
    if report_path is not None:
        summary += f"; report: {report_path}"
    console.print(summary)
    return bool(totals["failed"])


def _exit_now_if_native_work_is_abandoned(code: int) -> None:
    """After Ctrl-C an abandoned native call (an ncnn tile) may still run in a worker thread, and the
    normal interpreter shutdown would wait seconds for it: the report is written, so leave at once."""
    import sys

    from studio.native import abandoned

    if abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
