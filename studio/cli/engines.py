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
    from studio.cli.options import print_listing
    from studio.engines import ENGINES
    from studio.settings import Settings

    settings = Settings()
    rows = []
    for entry in ENGINES:
        try:
            availability = entry.load().availability(settings)
            ok, reason = availability.ok, availability.reason
        except ImportError as exc:
            ok, reason = False, f"missing package: {exc.name}"
        rows.append({"engine": entry.name, "available": ok, "reason": reason, "summary": entry.summary})
    print_listing(rows, ("engine",), as_json)
