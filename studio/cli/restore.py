"""`studio restore`: files and folders in, restored images out.

The options that set a restore setting are generated from the settings table (studio/settings/table.py):
`restore` gets its signature from `restore_signature()`. Declared here are only the options about files
and the run (inputs, -o, --report, --dry-run...), and the three that parse text into settings: repeated
--model (model + ensemble), --blend (a list of weights) and --var (preset variables).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from studio.cli.dry_run import print_plan
from studio.cli.options import parse_blend, parse_vars, setting_parameter
from studio.cli.progress import run_with_progress
from studio.cli.remote import restore_remotely
from studio.errors import UsageError
from studio.settings import PANEL_OUTPUT, PANEL_REMOTE, setting_fields, spec_of

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


def restore(ctx: typer.Context, inputs: list[Path], **flags: Any) -> None:
    """Resolve and check everything before the first pixel, then print the plan (--dry-run) or run it."""
    from studio.runner import plan_run

    run = {name: flags.pop(name) for name in RUN_OPTIONS}
    if run["debug"]:
        ctx.meta["studio.debug"] = True  # click shares meta with the group, which reads it on errors
    output, output_is_folder, flags["format"] = output_target(run["output"], flags["format"])
    cli = settings_from_flags(flags)
    if restore_remotely(cli, list(inputs), output, output_is_folder, run):
        return
    plan = plan_run(
        cli,
        list(inputs),
        output,
        output_is_folder=output_is_folder,
        report=run["report"],
        overwrite=run["overwrite"],
        skip_existing=run["skip_existing"],
        config_file=run["config"],
        preset_dirs=list(run["preset_dir"] or []),
    )
    if not run["dry_run"]:
        run_with_progress(plan, run["skip_existing"], run["overwrite"], bool(ctx.meta.get("studio.debug")))
    elif print_plan(plan, run["skip_existing"]):
        raise typer.Exit(1)  # the real run would fail these files: same exit code


def output_target(output: str | None, fmt: str | None) -> tuple[Path | None, bool, str | None]:
    """-o as a path, whether it names a folder (a trailing /), and the format its extension implies."""
    from studio.io import SUPPORTED_EXTENSIONS, WRITABLE_EXTENSIONS, output_format

    if output is None:
        return None, False, fmt
    path = Path(output)
    if path.suffix.lower() in SUPPORTED_EXTENSIONS:
        if path.suffix.lower() not in WRITABLE_EXTENSIONS:
            raise UsageError(f"-o {path}: studio writes png, jpg, webp or tiff, not {path.suffix}")
        implied = output_format(path, None)
        if fmt is not None and fmt != implied:
            raise UsageError(f"-o {path} looks like {implied.upper()} but --format is {fmt}; make them agree")
        fmt = implied
    return path, output.endswith(("/", os.sep)), fmt


def settings_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The setting options as settings values: repeated --model -> model (+ ensemble), --blend and --var parsed."""
    models = list(flags["model"] or [])
    return {
        **flags,
        "model": models[0] if models else None,
        "ensemble": models if len(models) > 1 else None,
        "blend": parse_blend(flags["blend"]),
        "variables": parse_vars(flags["variables"]) or None,
    }


def run_option(name: str, annotation: Any, *names: str, help: str, panel: str | None = None) -> inspect.Parameter:
    """A run option (not a setting): a switch defaults to off, a value to None."""
    option = typer.Option(*names, help=help, rich_help_panel=panel)
    default = False if annotation is bool else None
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


_OUTPUT_HELP = "Output file (one input) or folder (several inputs, or a trailing /)."
_SKIP_HELP = "Keep outputs that exist (resume a batch)."
_REPORT_HELP = "Write a JSON report here (default for batches: in the output folder)."
_TEXT_OPTIONS = {"model": list[str], "blend": str, "variables": list[str]}
"""Settings whose options the command parses: their type on the command line."""
_AFTER = {
    "preset": [run_option("preset_dir", Optional[list[Path]], "--preset-dir", help="Extra preset folder (repeatable).")]
}
"""Run options shown right after a setting's option."""
_LAST = [
    run_option("skip_existing", bool, "--skip-existing", help=_SKIP_HELP, panel=PANEL_OUTPUT),
    run_option("overwrite", bool, "--overwrite", help="Replace existing outputs (never inputs).", panel=PANEL_OUTPUT),
    run_option("report", Optional[Path], "--report", help=_REPORT_HELP, panel=PANEL_OUTPUT),
    run_option("config", Optional[Path], "--config", help="Settings file (TOML, a \\[restore] table)."),
    run_option("dry_run", bool, "--dry-run", help="Run every check, print the plan; write nothing."),
    run_option("yes", bool, "--yes", "-y", help="Start a paid --remote batch without asking.", panel=PANEL_REMOTE),
    run_option("debug", bool, "--debug", help="Show full tracebacks for errors (as `studio --debug`)."),
]
RUN_OPTIONS = ("output", "preset_dir", "skip_existing", "overwrite", "report", "config", "dry_run", "yes", "debug")


def restore_signature() -> inspect.Signature:
    """`restore`'s parameters for Typer: the inputs, -o, then one option per setting in table order (with the
    run options beside the settings they belong to), then the run options."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    inputs_help = "Image files and folders (folders are searched recursively)."
    parameters = [
        inspect.Parameter("ctx", positional, annotation=typer.Context),
        inspect.Parameter("inputs", positional, annotation=Annotated[list[Path], typer.Argument(help=inputs_help)]),
        run_option("output", Optional[str], "-o", "--output", help=_OUTPUT_HELP),
    ]
    return inspect.Signature(parameters + setting_options() + _LAST)


def setting_options(leave_out: Collection[str] = ()) -> list[inspect.Parameter]:
    """One option per restore setting, in table order, with the run options that belong beside them; the
    settings in `leave_out` get none (`studio video` has no image-format options)."""
    parameters: list[inspect.Parameter] = []
    for item in setting_fields():
        if item.name in leave_out:
            continue
        if spec_of(item).generated:
            parameters.append(setting_parameter(item))
        elif item.name in _TEXT_OPTIONS:
            parameters.append(setting_parameter(item, _TEXT_OPTIONS[item.name]))
        parameters += _AFTER.get(item.name, [])
    return parameters


restore.__signature__ = restore_signature()  # type: ignore[attr-defined]
