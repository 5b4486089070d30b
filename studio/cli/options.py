"""Option parsing shared by several commands, and the options generated from the settings table."""

from __future__ import annotations

import inspect
from dataclasses import Field
from typing import Annotated, Any, Optional

import typer

from studio.errors import UsageError
from studio.settings import declared_type, help_text, long_flag, spec_of

_VALUE_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def setting_parameter(item: Field, value_type: Any = None) -> inspect.Parameter:
    """The `studio restore` option of a setting, as a keyword parameter Typer reads from a signature.

    Flags, help (with the default), panel and type come from the settings table; `value_type`
    overrides the type for options that arrive as text (--blend) or repeat (--model, --var).
    The default is None, so the command passes on only what the user gave.
    """
    spec = spec_of(item)
    flag = long_flag(item)
    value_type = value_type or _VALUE_TYPES[declared_type(item)]
    names = (f"{flag}/--no-{flag[2:]}",) if value_type is bool else (flag,)
    option = typer.Option(*names, *spec.short, help=help_text(item), rich_help_panel=spec.panel)
    annotation = Annotated[Optional[value_type], option]
    return inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def parse_vars(items: list[str] | None) -> dict[str, str]:
    """`--var era=1950s --var subject=bride` -> {"era": "1950s", "subject": "bride"}."""
    variables: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {item!r}: expected KEY=VALUE, e.g. --var era=1950s")
        variables[key.strip()] = value
    return variables


def parse_blend(text: str | None) -> list[float] | None:
    """`--blend 0.6,0.4` -> [0.6, 0.4]; the settings check the count against the --model list."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--blend {text!r}: expected comma-separated numbers, e.g. --blend 0.6,0.4") from None


def print_listing(rows: list[dict[str, Any]], keys: tuple[str, ...], as_json: bool, title: str | None = None) -> None:
    """A listing as JSON (for scripts) or as a table whose `keys` columns (names, ids) never truncate.

    Rich shortens cells to fit the terminal (80 columns when output goes to a file); the key columns get
    their full width and the other columns wrap instead.
    """
    if as_json:
        import json

        print(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0] if rows else keys:
        if column in keys:
            longest = max((len(str(row.get(column, ""))) for row in rows), default=len(column))
            table.add_column(column, no_wrap=True, min_width=max(longest, len(column)))
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row.values()))
    Console().print(table)


def _cell(value: Any) -> str:
    from rich.markup import escape

    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]no[/]"
    return escape("" if value is None else str(value))
