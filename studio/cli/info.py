"""`studio info`: print the provenance an output carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from studio.errors import InputError


def info(
    image: Annotated[Path, typer.Argument(help="An image or video written by studio.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show how an output was made: engine, model, weights hash, settings, and the command to reproduce it.

    Example: studio info photo_restored.png
    """
    from studio.io import VIDEO_EXTENSIONS, read_provenance

    if image.suffix.lower() in VIDEO_EXTENSIONS and image.is_file():
        from studio.video.mux import read_clip_provenance

        data = read_clip_provenance(image)
    else:
        data = read_provenance(image)
    if data is None:
        raise InputError(f"{image}: carries no studio metadata (not a studio output, or stripped by another tool)")
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key in ("studio_version", "created", "engine", "model", "weights_sha256", "color_fix", "output_size"):
        table.add_row(f"[bold]{key}[/]", str(data.get(key)))
    settings = data.get("settings", {})
    shown = (
        "scale",
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "guidance",
        "noise_level",
        "strength",
        "fidelity",
        "faces",
        "face_fidelity",
        "tile",
    )
    for key in shown:  # only those that applied: provenance leaves out what the engine did not read
        if key in settings:
            table.add_row(f"[bold]{key}[/]", str(settings[key]))
    if printed := data.get("print_size"):
        for label, key in (("print size", "stored"), ("at 300 dpi", "at_300_dpi")):
            if printed.get(key):
                entry = printed[key]
                inches, cm = entry["inches"], entry["cm"]
                table.add_row(
                    f"[bold]{label}[/]",
                    f"{inches[0]} x {inches[1]} in ({cm[0]} x {cm[1]} cm) at {entry['dpi'][0]:g} dpi",
                )
    if data.get("faces"):
        table.add_row("[bold]faces[/]", json.dumps(data["faces"]))
    if video := data.get("video"):
        table.add_row("[bold]video[/]", json.dumps({k: video.get(k) for k in ("encoder", "temporal", "flicker")}))
    console = Console()
    console.print(table)
    console.print(f"[bold]reproduce:[/] {data.get('command')}", soft_wrap=True)
