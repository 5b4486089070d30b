"""The `studio` command. Library code raises StudioError; only this edge turns it into a line and an exit code.

`studio --help` imports every command module, so those import only typer and studio's dependency-free
modules (errors, messages, cli.options) at the top; a command imports the library it runs (io, lab,
weights, engines, serve: numpy, Pillow, TOML settings, FastAPI) in its body, when it runs.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup, TyperOption

from studio.cli import compare, degrade, engines, evaluate, info, presets, restore, serve, train, video, weights
from studio.cli.interrupt import INTERRUPTED, leave, terminate_as_interrupt
from studio.errors import StudioError
from studio.native import wait_for_background
from studio.version import __version__


class StudioGroup(TyperGroup):
    """Catches StudioError from any subcommand: one red line, the error's exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StudioError as exc:
            if ctx.meta.get("studio.debug"):
                raise
            _error_line(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _error_line("interrupted; finished outputs are kept, no partial file was left behind")
            leave(INTERRUPTED)


def _switch_type_label(display_type_rich: Any) -> Any:
    """Typer labels every option with its type; on a plain switch (`--dry-run`, `--overwrite`) a `<bool>`
    label reads as if the switch took a value, so switches show none."""

    def label(self: TyperOption, ctx: click.Context) -> str | None:
        return None if self.is_flag else display_type_rich(self, ctx)

    return label


TyperOption.display_type_rich = _switch_type_label(TyperOption.display_type_rich)  # type: ignore[method-assign]


def _error_line(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {text}", markup=True)


app = typer.Typer(
    cls=StudioGroup,
    name="studio",
    help="Diffusion-first image restoration: SD x4, Real-ESRGAN, faces, colour fix.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"studio {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors, and third-party warnings.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """studio restores old photos, scans and renders to print quality."""
    ctx.meta["studio.debug"] = debug


def _register() -> None:
    app.command("restore", help=restore.HELP, no_args_is_help=True)(restore.restore)
    app.command("compare", help=compare.HELP, no_args_is_help=True)(compare.compare)
    app.command("degrade", help=degrade.HELP, no_args_is_help=True)(degrade.degrade)
    app.command("engines")(engines.engines)
    app.command("evaluate", help=evaluate.HELP, no_args_is_help=True)(evaluate.evaluate)
    app.command("info", no_args_is_help=True)(info.info)
    app.add_typer(serve.app, name="serve", help=serve.HELP)
    app.command("train", help=train.HELP, no_args_is_help=True)(train.train)
    app.command("video", help=video.HELP, no_args_is_help=True)(video.video)
    app.add_typer(weights.app, name="weights", help="List, download, verify and import model weights.")
    app.add_typer(presets.app, name="presets", help="Prompt presets: list them, show one rendered.")


_register()


def main() -> None:
    """Console-script entry point. SIGTERM is Ctrl-C from the start (a batch then widens this, see
    cli/interrupt.py), so `timeout` or a container stop never kills studio mid-write. Before the interpreter
    shuts down, background work still running (a quality report, a face detection: under a second) is waited
    for with further signals ignored, so a signal cannot cut that wait short with a traceback."""
    terminate_as_interrupt()
    try:
        sys.exit(app())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        wait_for_background()
