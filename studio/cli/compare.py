"""`studio compare`: one photo, several runs, one comparison sheet and a slider page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from studio import messages
from studio.errors import InputError, UsageError

HELP = """Restore one photo with several runs and put the results side by side.

Writes OUTPUT/sheet.png (the same crop of every run at 1:1 pixels, labelled, over the full images),
OUTPUT/compare.html (a before/after slider per run, self-contained), each run's full image and
OUTPUT/compare.json. The crop is where the runs differ most, unless --crop is given.

[bold]Examples[/]

  studio compare photo.jpg --run engine=classical --run engine=fast --run engine=fast,fidelity=0.5

  studio compare scan.png --runs runs.toml --crop 420,300,256,256 -o scan_compare/
"""


def compare(
    photo: Annotated[Path, typer.Argument(help="The image to restore with every run.")],
    run: Annotated[
        Optional[list[str]], typer.Option("--run", "-r", help="Settings of one run, KEY=VALUE,... (repeatable).")
    ] = None,
    runs: Annotated[Optional[Path], typer.Option("--runs", help="TOML file of [[run]] tables.")] = None,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Output folder (default: PHOTO_compare/ beside the photo).")
    ] = None,
    crop: Annotated[
        Optional[str],
        typer.Option("--crop", help="X,Y,WIDTH,HEIGHT in output pixels (default: where the runs differ most)."),
    ] = None,
    crop_size: Annotated[int, typer.Option("--crop-size", help="Side of the automatic crop, in output pixels.")] = 256,
) -> None:
    from rich.console import Console

    from studio.lab import compare as comparing
    from studio.lab.runs import collect_runs

    if not photo.is_file():
        raise InputError(f"{photo}: no such image file")
    if crop_size < 32:
        raise UsageError(f"--crop-size {crop_size}: expected at least 32 pixels")
    selected = collect_runs(list(run or []), runs)
    chosen = comparing.parse_crop(crop) if crop else None
    output = output or photo.with_name(f"{photo.stem}_compare")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    messages.set_sink(
        lambda level, text: console.print(
            f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True
        )
    )

    def on_done(result: comparing.RunImage) -> None:
        if result.image is None:
            console.print(f"[yellow]not run:[/] {result.label}: {result.error}", markup=True)
        else:
            reused = f", engine output of {result.reused_from} reused" if result.reused_from else ""
            console.print(
                f"[green]ok:[/] {result.label} ({result.engine}, {result.seconds:.1f} s{reused}) -> "
                f"{output / result.file}",
                markup=True,
            )

    try:
        summary = comparing.compare(photo, selected, output, chosen, crop_size, on_done)
    finally:
        messages.set_sink(None)
    box = summary["crop"]
    console.print(
        f"sheet: {output / 'sheet.png'} (crop {box['x']},{box['y']} {box['width']}x{box['height']}); "
        f"slider page: {output / 'compare.html'}"
    )
