"""`studio engines`: what can run on this machine, and why not."""

from __future__ import annotations

from typing import Annotated

import typer


def engines(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the engines, whether each can run here, and why not (no GPU, weights missing...).

    Example: studio engines
    """
    import json

    from studio.engines import describe_engines

    rows = describe_engines()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("engine", "available", "notes", "what it is")
    for row in rows:
        mark = "[green]yes[/]" if row["available"] else "[red]no[/]"
        table.add_row(row["engine"], mark, row["reason"], row["summary"])
    Console().print(table)
