"""`studio engines`: what can run on this machine, and why not."""

from __future__ import annotations

from typing import Annotated

import typer

from studio.cli.options import print_listing


def engines(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the engines, whether each can run here, and why not (no GPU, weights missing...).

    Example: studio engines
    """
    from studio.engines import describe_engines

    print_listing(describe_engines(), ("engine",), as_json)
