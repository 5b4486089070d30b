"""`studio serve`: the REST API and the browser studio on one job queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from studio.errors import UsageError

HELP = """Serve the REST API (/api/v1, schema at /docs) and the browser studio (/).

[bold]Examples[/]

  studio serve

  studio serve --port 9000 --data-dir /srv/studio --keep-hours 72

  STUDIO_SERVE_TOKEN=s3cret studio serve --host 0.0.0.0
"""


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; beyond loopback a --token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8765,
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", help="Jobs database, inputs and results. Default: ~/.local/share/studio/serve."),
    ] = None,
    token: Annotated[
        Optional[str],
        typer.Option(
            "--token", envvar="STUDIO_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN' on every API call."
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload (413 beyond it).")
    ] = 20.0,
    max_pixels: Annotated[
        Optional[int],
        typer.Option("--max-pixels", help="Pixel budget per input (413 beyond it). Default: Pillow's bomb limit."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="CPU workers for classical/fast jobs, beside one diffusion worker per GPU.")
    ] = 1,
    queue_limit: Annotated[
        int, typer.Option("--queue-limit", help="Queued + running jobs before new ones get 429.")
    ] = 100,
    keep_hours: Annotated[
        float, typer.Option("--keep-hours", help="Delete finished jobs and their files after this many hours.")
    ] = 24.0,
) -> None:
    import uvicorn

    from studio.serve.app import create_app
    from studio.serve.config import ServeConfig, check_bind, default_data_dir
    from studio.settings import DEFAULT_MAX_PIXELS

    check_bind(host, token)
    for name, value in (
        ("--max-upload-mb", max_upload_mb),
        ("--workers", workers),
        ("--queue-limit", queue_limit),
        ("--keep-hours", keep_hours),
    ):
        if value <= 0:
            raise UsageError(f"{name} {value}: expected a number above 0")
    if max_pixels is not None and max_pixels < 256:
        raise UsageError(f"--max-pixels {max_pixels}: expected at least 256")
    config = ServeConfig(
        data_dir=data_dir or default_data_dir(),
        token=token,
        max_upload_bytes=int(max_upload_mb * 1e6),
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        queue_limit=queue_limit,
        cpu_workers=workers,
        keep_seconds=keep_hours * 3600,
    )
    typer.echo(f"studio serve: http://{host}:{port}/ (API docs at /docs), data in {config.data_dir}", err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
