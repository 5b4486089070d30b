"""`studio serve`: the REST API and the browser studio on one job queue; `studio serve token` names clients."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from studio.errors import UsageError

if TYPE_CHECKING:
    from studio.serve.tokens import TokenFile

HELP = """Serve the REST API (/api/v1, schema at /openapi.json) and the browser studio (/).

[bold]Examples[/]

  studio serve

  studio serve --port 9000 --data-dir /srv/studio --keep-hours 72

  studio serve token add alice   (prints alice's token; then studio serve --host 0.0.0.0)
"""

app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
token_app = typer.Typer(no_args_is_help=True)
app.add_typer(token_app, name="token", help="Named access tokens: add, list, revoke (stored hashed in the data dir).")

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Jobs database, inputs and results. Default: ~/.local/share/studio/serve."),
]

WeightsDirs = Annotated[
    Optional[list[Path]],
    typer.Option("--weights-dir", help="Folder whose weights files clients may name by file name (repeatable)."),
]
PresetDirs = Annotated[
    Optional[list[Path]],
    typer.Option("--preset-dir", help="Extra preset folder (repeatable)."),
]
AllowedHosts = Annotated[
    Optional[list[str]],
    typer.Option("--allowed-host", help="Another Host name clients use, e.g. a reverse proxy's (repeatable)."),
]


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; beyond loopback a token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8765,
    data_dir: DataDir = None,
    token: Annotated[
        Optional[str],
        typer.Option(
            "--token", envvar="STUDIO_SERVE_TOKEN", help="Operator token (sees every job); see also `token add`."
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload (413 beyond it).")
    ] = 20.0,
    max_pixels: Annotated[
        Optional[int],
        typer.Option("--max-pixels", help="Pixel budget per input (413 beyond it). Default: Pillow's bomb limit."),
    ] = None,
    max_output_pixels: Annotated[
        Optional[int],
        typer.Option("--max-output-pixels", help="Pixel budget per output, input x scale (413). Default: 8K UHD."),
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
    weights_dir: WeightsDirs = None,
    preset_dir: PresetDirs = None,
    allowed_host: AllowedHosts = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from studio.serve.app import create_app
    from studio.serve.config import ServeConfig, check_bind, default_data_dir
    from studio.serve.tokens import TokenFile
    from studio.settings import DEFAULT_MAX_PIXELS

    _check_options(
        {
            "--max-upload-mb": max_upload_mb,
            "--workers": workers,
            "--queue-limit": queue_limit,
            "--keep-hours": keep_hours,
        },
        {"--max-pixels": max_pixels, "--max-output-pixels": max_output_pixels},
        [*(weights_dir or []), *(preset_dir or [])],
    )
    data_dir = data_dir or default_data_dir()
    check_bind(host, token, len(TokenFile(data_dir / "tokens.json").entries()))
    os.umask(0o077)  # whatever the server writes (results, database, logs) is its user's alone
    config = ServeConfig(
        data_dir=data_dir,
        token=token,
        max_upload_bytes=int(max_upload_mb * 1e6),
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        queue_limit=queue_limit,
        cpu_workers=workers,
        keep_seconds=keep_hours * 3600,
        **({"max_output_pixels": max_output_pixels} if max_output_pixels else {}),
        weights_dirs=tuple(folder.resolve() for folder in weights_dir or []),
        preset_dirs=tuple(preset_dir or []),
        host=host,
        allowed_hosts=tuple(allowed_host or []),
    )
    service = create_app(config)
    typer.echo(f"studio serve: http://{host}:{port}/ (schema at /openapi.json), data in {config.data_dir}", err=True)
    uvicorn.run(service, host=host, port=port, log_level="warning")


def _check_options(positive: dict[str, float], pixels: dict[str, int | None], folders: list[Path]) -> None:
    for name, value in positive.items():
        if value <= 0:
            raise UsageError(f"{name} {value}: expected a number above 0")
    for name, budget in pixels.items():
        if budget is not None and budget < 256:
            raise UsageError(f"{name} {budget}: expected at least 256")
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such folder")


def _tokens(data_dir: Path | None) -> TokenFile:
    from studio.serve.config import default_data_dir
    from studio.serve.tokens import TokenFile

    return TokenFile((data_dir or default_data_dir()) / "tokens.json")


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="Who the token is for (letters, digits, . _ -).")],
    operator: Annotated[bool, typer.Option("--operator", help="This token sees every client's jobs.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Make a token for NAME and print it (only now: the server keeps its hash)."""
    typer.echo(_tokens(data_dir).add(name, operator))


@token_app.command("list")
def token_list(data_dir: DataDir = None) -> None:
    """The tokens' names, roles and creation dates (never the tokens themselves)."""
    import time

    for entry in _tokens(data_dir).entries():
        role = "operator (all jobs)" if entry.operator else "client (own jobs)"
        typer.echo(f"{entry.name}\t{role}\t{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.created))}")


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")], data_dir: DataDir = None) -> None:
    """Remove NAME's token; a running server refuses it from its next request on."""
    _tokens(data_dir).revoke(name)
    typer.echo(f"revoked {name}", err=True)
