"""`studio evaluate`: score restore settings on (clean, low-quality) pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from studio import messages
from studio.cli.layout import print_records

HELP = """Restore every low-quality image of a pairs folder with each run and score it against its clean image.

PSNR and SSIM on the Y channel (scale px cropped per border), LPIPS, colour drift (mean CIEDE2000 of
the low frequencies), seconds and peak memory per image. A run is any set of `studio restore` settings.

[bold]Examples[/]

  studio evaluate pairs/ --run engine=classical --run engine=fast --run engine=fast,faces=gfpgan

  studio evaluate --hq clean/ --lq small/ --runs runs.toml --csv scores.csv
"""


def evaluate(
    pairs: Annotated[Optional[Path], typer.Argument(help="Pairs folder from `studio degrade` (hq/, lq/).")] = None,
    run: Annotated[
        Optional[list[str]], typer.Option("--run", "-r", help="Settings of one run, KEY=VALUE,... (repeatable).")
    ] = None,
    runs: Annotated[Optional[Path], typer.Option("--runs", help="TOML file of [[run]] tables.")] = None,
    hq: Annotated[Optional[Path], typer.Option("--hq", help="Clean images (instead of PAIRS/hq).")] = None,
    lq: Annotated[Optional[Path], typer.Option("--lq", help="Low-quality images (instead of PAIRS/lq).")] = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="JSON report (default: PAIRS/evaluation.json).")
    ] = None,
    csv: Annotated[
        Optional[Path], typer.Option("--csv", help="One row per run and image (default: PAIRS/evaluation.csv).")
    ] = None,
) -> None:
    from rich.console import Console

    from studio.lab.evaluate import evaluate_run, find_pairs, lpips_or_reason, pairs_scale, write_reports
    from studio.lab.runs import collect_runs

    selected = collect_runs(list(run or []), runs)
    found = find_pairs(pairs, hq, lq)
    scale = pairs_scale(found)
    base = pairs or (lq or Path(".")).resolve().parent
    report = report or base / "evaluation.json"
    csv = csv or base / "evaluation.csv"
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    messages.set_sink(
        lambda level, text: console.print(
            f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True
        )
    )
    lpips_fn, lpips_note = lpips_or_reason()
    results = []
    try:
        for item in selected:
            console.print(f"[bold]{item.label}[/]: {len(found)} image(s), x{scale}", markup=True)
            results.append(
                evaluate_run(
                    item,
                    found,
                    scale,
                    lpips_fn,
                    lambda _label, entry: console.print(
                        f"  {entry.name}: "
                        + (
                            f"[red]{entry.error}[/]"
                            if entry.error
                            else f"PSNR-Y {entry.psnr_y:.2f} dB, {entry.seconds:.2f} s"
                        ),
                        markup=True,
                    ),
                )
            )
    finally:
        messages.set_sink(None)
    write_reports(results, scale, lpips_note, report, csv)
    print_records(_rows(results, lpips_note), title="mean (median) per image; worst image by PSNR-Y")
    if lpips_note:
        console.print(f"LPIPS: {lpips_note}")
    for result in results:
        if result.unavailable:
            console.print(f"[yellow]not run:[/] {result.label}: {result.unavailable}", markup=True)
    console.print(f"report: {report}; per image: {csv}")
    if any(image.error for result in results for image in result.images):
        raise typer.Exit(1)


def _cell(summary: dict[str, Any], metric: str, digits: int) -> str:
    if metric not in summary:
        return "-"
    values = summary[metric]
    return f"{values['mean']:.{digits}f} ({values['median']:.{digits}f})"


def _rows(results: list, lpips_note: str | None) -> list[dict[str, str]]:
    """One record per run: mean (median) per image, and the worst image by PSNR-Y."""
    lpips_header = f"LPIPS ↓ ({lpips_note})" if lpips_note else "LPIPS ↓"
    rows = []
    for result in results:
        summary = {} if result.unavailable else result.summary()
        worst = summary.get("psnr_y", {}).get("worst")
        row = {"run": result.label, "engine": result.engine or ""}
        if result.unavailable:
            rows.append({**row, "PSNR-Y dB ↑": "not run (below)"})
            continue
        rows.append(
            {
                **row,
                "PSNR-Y dB ↑": _cell(summary, "psnr_y", 2),
                "SSIM-Y ↑": _cell(summary, "ssim_y", 4),
                lpips_header: _cell(summary, "lpips", 4),
                "colour drift ΔE ↓": _cell(summary, "color_drift", 2),
                "s / image": _cell(summary, "seconds", 2),
                "peak MiB": _cell(summary, "peak_mib", 0),
                "worst image": f"{worst['image']} ({worst['value']:.2f})" if worst else "-",
            }
        )
    return rows
