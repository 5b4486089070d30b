"""Option parsing shared by several commands, and the options generated from the settings table."""

from __future__ import annotations

import inspect
from dataclasses import Field
from typing import Annotated, Any, Optional

import typer

from studio.engines import engine_names
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
    shown = help_text(item).replace("{engines}", ", ".join(engine_names()))  # the registry's, as it grows
    option = typer.Option(*names, *spec.short, help=shown, rich_help_panel=spec.panel)
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
    """A listing as JSON (for scripts), else as a table or one block per record (cli/layout.py): the `keys`
    column (names, ids) leads each record."""
    if as_json:
        import json

        print(json.dumps(rows, indent=2, default=str))
        return
    from studio.cli.layout import print_records

    ordered = [{**{key: row.get(key) for key in keys}, **row} for row in rows]
    print_records(ordered, title=title)
