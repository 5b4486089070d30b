"""`studio presets list|show`: see which prompt presets exist and what one turns into."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from studio.cli.options import parse_vars, print_listing

app = typer.Typer(no_args_is_help=True)

PresetDirOption = Annotated[
    Optional[list[Path]],
    typer.Option("--preset-dir", help="Extra folder of *.toml presets (repeatable); it overrides same-named ones."),
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("list")
def list_presets(preset_dir: PresetDirOption = None, as_json: JsonOption = False) -> None:
    """List the prompt presets: name, what each is for, and the folder it comes from.

    Example: studio presets list --preset-dir ./my-presets
    """
    from studio.presets import load_presets

    rows = [
        {"preset": name, "description": preset.description, "folder": str(preset.path.parent)}
        for name, preset in sorted(load_presets(preset_dir or []).items())
    ]
    print_listing(rows, ("preset",), as_json)


@app.command("show")
def show_preset(
    name: Annotated[str, typer.Argument(help="Preset name, as in `studio presets list`.")],
    prompt: Annotated[str, typer.Option("--prompt", help="Your prompt text, put where {prompt} is.")] = "",
    var: Annotated[Optional[list[str]], typer.Option("--var", help="Template variable KEY=VALUE (repeatable).")] = None,
    engine: Annotated[
        Optional[str], typer.Option("--engine", help="Show the merged parameters for this engine only.")
    ] = None,
    preset_dir: PresetDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a preset's rendered prompts and the parameters it suggests per engine.

    Example: studio presets show old-photo --prompt "a family at the beach" --var era=1950s --engine sd-x4
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from studio.presets import get_preset

    preset = get_preset(name, preset_dir or [])
    positive, negative = preset.render(prompt, parse_vars(var))
    tables = {engine: preset.parameters_for(engine)} if engine else preset.engines
    if as_json:
        import json

        print(
            json.dumps(
                {
                    "name": preset.name,
                    "description": preset.description,
                    "file": str(preset.path),
                    "variables": {v: preset.variables.get(v, "") for v in preset.variable_names},
                    "positive": positive,
                    "negative": negative,
                    "parameters": tables,
                },
                indent=2,
            )
        )
        return
    console = Console()
    console.print(f"[bold]{escape(preset.name)}[/]: {escape(preset.description)}")
    console.print(f"file: {escape(str(preset.path))}")
    for variable in preset.variable_names:
        default = preset.variables.get(variable, "")
        console.print(f"variable {escape(variable)}: default {escape(repr(default))}")
    console.print(f"[bold]positive:[/] {escape(positive)}")
    console.print(f"[bold]negative:[/] {escape(negative)}")
    table = Table("engine", "parameters", title="suggested parameters (flags you give win)")
    for engine_name, values in tables.items():
        shown = ", ".join(f"{key} = {value!r}" for key, value in values.items()) or "(none)"
        table.add_row(engine_name, escape(shown))
    console.print(table)
