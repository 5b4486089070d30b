"""`studio degrade`: make (clean, low-quality) test pairs for `studio evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Make realistic low-quality versions of clean images, as test pairs.

Writes OUTPUT/hq/NAME.png (the clean image, cropped so its sides divide by the scale),
OUTPUT/lq/NAME.png and OUTPUT/degradations.json (every parameter drawn, per image).

[bold]Examples[/]

  studio degrade clean/ -o pairs/ --profile realesrgan --scale 4 --seed 1

  studio degrade scans/*.png -o pairs-old/ --profile old-photo --scale 2
"""


def degrade(
    inputs: Annotated[list[Path], typer.Argument(help="Clean image files and folders (searched recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pairs folder (hq/, lq/, degradations.json).")],
    profile: Annotated[str, typer.Option("--profile", help="realesrgan, old-photo, scan or jpeg.")] = "realesrgan",
    scale: Annotated[
        int, typer.Option("--scale", "-s", help="How many times smaller the low-quality image is (1-8).")
    ] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same pairs.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Remake pairs in an existing pairs folder.")] = False,
) -> None:
    from rich.console import Console

    from studio.lab.degrade import make_pairs

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    results = make_pairs(list(inputs), output, profile, scale, seed, overwrite)
    for result in results:
        if result.status == "ok":
            width, height = result.record["lq_size"]
            console.print(f"[green]ok:[/] {result.name} -> lq {width}x{height}")
        else:
            console.print(f"[red]failed:[/] {result.error}")
    failed = sum(r.status == "failed" for r in results)
    console.print(f"{len(results) - failed}/{len(results)} pairs in {output} ({profile}, x{scale}, seed {seed})")
    if failed:
        raise typer.Exit(1)
