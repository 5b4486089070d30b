"""Listings people can read wherever they go: a table on a terminal wide enough for it, otherwise (a pipe,
a file, a narrow window) one record per block, one `field: value` per line. Neither layout ever splits a word,
a number or a hash across lines, or shortens one with "...".
"""

from __future__ import annotations

from typing import Any


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _fits(console: Any, rows: list[dict[str, Any]], columns: list[str]) -> bool:
    """A table fits when every column gets its longest cell on one line (borders and padding: 3 per column)."""
    if not console.is_terminal:
        return False
    widths = [max([len(column), *(len(_text(row.get(column))) for row in rows)]) for column in columns]
    return sum(widths) + 3 * len(columns) + 1 <= console.width


def print_records(rows: list[dict[str, Any]], console: Any = None, title: str | None = None) -> None:
    """`rows` (dicts sharing keys; the first key names the record) as a table when it fits, else as blocks."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    columns = list(dict.fromkeys(column for row in rows for column in row))  # every key, in first-seen order
    if rows and _fits(console, rows, columns):
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*(_text(row.get(column)) for column in columns))
        console.print(table, markup=False)
        return
    if title:
        console.print(title, markup=False, soft_wrap=True)
    for row in rows:
        console.print("", soft_wrap=True)
        console.print(_text(row.get(columns[0])), style="bold", markup=False, soft_wrap=True)
        print_fields([(column, row[column]) for column in columns[1:] if column in row], console, indent="  ")


def print_fields(fields: list[tuple[str, Any]], console: Any, indent: str = "") -> None:
    """`label: value` lines, values aligned; a list of texts (hashes) gives one line per item, whole."""
    width = max((len(label) for label, _ in fields), default=0) + 1
    for label, value in fields:
        texts = isinstance(value, list) and value and all(isinstance(item, str) for item in value)
        items = value if texts else ["-" if value is None else value]
        for number, item in enumerate(items):
            head = f"{label}:" if number == 0 else ""
            console.print(f"{indent}{head:<{width}} {_text(item)}", markup=False, soft_wrap=True)
