"""`studio info`: print the provenance an output carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from studio.cli.layout import print_fields
from studio.errors import InputError

SUMMARY = ("studio_version", "created", "engine", "model", "weights_sha256", "color_fix", "output_size")
SHOWN_SETTINGS = (
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

    fields = [(key, data.get(key)) for key in SUMMARY]
    settings = data.get("settings", {})
    fields += [(key, settings[key]) for key in SHOWN_SETTINGS if key in settings]  # only those that applied
    if printed := data.get("print_size"):
        for label, key in (("print size", "stored"), ("at 300 dpi", "at_300_dpi")):
            if printed.get(key):
                entry = printed[key]
                inches, cm = entry["inches"], entry["cm"]
                fields.append(
                    (label, f"{inches[0]} x {inches[1]} in ({cm[0]} x {cm[1]} cm) at {entry['dpi'][0]:g} dpi")
                )
    if data.get("faces"):
        fields.append(("faces", json.dumps(data["faces"])))
    if data.get("remote"):  # `studio restore --remote`: where it ran
        fields.append(("ran on", json.dumps(data["remote"])))
    if video := data.get("video"):
        fields.append(("video", json.dumps({k: video.get(k) for k in ("encoder", "temporal", "flicker")})))
    console = Console(highlight=False)
    print_fields(fields, console)
    if command := data.get("command"):
        console.print(f"reproduce: {runnable(command)}", markup=False, soft_wrap=True)


def runnable(command: str) -> str:
    """The recorded command with `-o` moved to a free name beside the original output (`NAME_reproduced.png`,
    then `_reproduced_2`...), so it runs as printed and never replaces the output it came from."""
    import shlex

    args = shlex.split(command)
    if "-o" not in args[:-1]:
        return command
    index = args.index("-o") + 1
    original = Path(args[index])
    candidate, number = original.with_name(f"{original.stem}_reproduced{original.suffix}"), 1
    while candidate.exists() or candidate.with_name(candidate.name + ".json").exists():
        number += 1
        candidate = original.with_name(f"{original.stem}_reproduced_{number}{original.suffix}")
    args[index] = str(candidate)
    return shlex.join(args)
