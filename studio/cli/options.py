"""Option parsing shared by several commands."""

from __future__ import annotations

from typing import Any

from studio.errors import UsageError


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
