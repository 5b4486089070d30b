"""`studio weights`: list, pull, verify and import model weights. Errors propagate as StudioError."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from studio.cli.options import print_listing
from studio.errors import EnvironmentProblem

app = typer.Typer(no_args_is_help=True)


def _size(path: Path | None) -> str:
    if path is None:
        return ""
    if path.is_dir():
        total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        total = path.stat().st_size
    return f"{total / 1e6:.1f} MB"


@app.command("list")
def list_weights(
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Only this kind: sr, face, detector, diffusion."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show every known model: kind, whether it is on disk, size, licence, what it is good for.

    Example: studio weights list --kind sr
    """
    from studio import weights

    rows = []
    for spec in weights.registry():
        if kind and spec.kind != kind:
            continue
        installed, path = weights.install_state(spec)
        state = {"bundled": "bundled (converts on first use)"}.get(installed, installed)
        if installed == "yes" and (install := weights.missing_package(spec)):
            state = f"yes; its network needs: {install}"
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "installed": state,
                "size": _size(path),
                "licence": spec.license,
                "good for": spec.good_for,
            }
        )
    print_listing(rows, ("name",), as_json, title=f"weights in {weights.weights_dir()}")


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="A registry name from `studio weights list`.")],
) -> None:
    """Download a model into the weights folder (resumes, checks sha256).

    Example: studio weights pull realesrgan-x4plus
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from studio import weights

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(name, total=None)
        path = weights.pull(
            name,
            progress=lambda done, total: bar.update(task, completed=done, total=total or None),
        )
    typer.echo(f"{name}: {path}")
    spec = weights.find(name)
    if spec is not None and (install := weights.missing_package(spec)):
        typer.echo(f"{name}: its network class comes from another package; install it with: {install}")


@app.command("verify")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Hash every downloaded model and compare with the registry; exit 3 if any file is corrupt.

    Example: studio weights verify
    """
    from studio import weights

    checks = weights.verify()
    rows = [{"name": c.name, "status": c.status, "path": str(c.path or ""), "detail": c.detail} for c in checks]
    print_listing(rows, ("name",), as_json)
    bad = [c.name for c in checks if c.status == "mismatch"]
    if bad:
        raise EnvironmentProblem(
            f"{len(bad)} weight file(s) do not match their sha256: {', '.join(bad)}; delete them and "
            f"`studio weights pull {bad[0]}`"
        )


@app.command("import")
def import_(
    param: Annotated[Path, typer.Argument(help="The ncnn .param file, or a network file (.safetensors, .pth).")],
    bin_file: Annotated[
        Path | None, typer.Argument(metavar="[BIN]", help="The ncnn .bin file (ncnn models only).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name to use with --model (default: the file stem)."),
    ] = None,
) -> None:
    """Bring a model into the weights folder: an ncnn Real-ESRGAN model (RRDBNet or Compact), converted, or a
    network file spandrel reads (a `studio train` result), checked and copied.

    Examples: studio weights import realesr-animevideov3-x4.param realesr-animevideov3-x4.bin --name anime-fast

              studio weights import newspaper-x4.safetensors --name newspaper
    """
    from studio import weights
    from studio.errors import InputError

    if bin_file is None:
        if not param.is_file():
            raise InputError(f"{param}: file not found")
        if param.suffix.lower() == ".param":
            raise InputError(f"{param}: an ncnn model needs its .bin file too")
        from studio.engines.fast.backends import load_spandrel

        load_spandrel(param)  # one line if it is not a super-resolution network spandrel reads
    path = weights.import_model(param, bin_file, name)
    typer.echo(str(path))
