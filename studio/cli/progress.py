"""Running a planned restore with a live display: a progress bar per batch and per image, one line per file,
and notices and warnings printed above the bars."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from studio import messages
from studio.cli.distributed import finish_distributed
from studio.cli.interrupt import Interrupts, exit_after_interrupt, leave


def run_with_progress(plan: Any, skip_existing: bool, overwrite: bool, debug: bool, batch_runner: Any = None) -> None:
    """Run the plan (this process's share under `accelerate launch`), then summarise; exit 1 if a file failed,
    130 after Ctrl-C. `batch_runner` runs the jobs (default: here; `--remote`: on the remote)."""
    from rich.console import Console

    from studio.runner import run_batch
    from studio.runner.distributed import current_share

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    share = current_share()  # under `accelerate launch`: this process's part of the batch
    all_jobs = plan.jobs
    plan = dataclasses.replace(plan, jobs=share.select(plan.jobs))
    messages.set_sink(
        lambda level, text: console.print(
            f"[yellow]warning:[/] {text}" if level == "warning" else f"[cyan]{text}[/]", markup=True
        )
    )
    progress, on_job_start, on_job_done = _display(console, len(plan.jobs))
    with Interrupts() as interrupts:
        try:
            with progress, warnings.catch_warnings():
                if not debug:  # third-party warnings (torch, diffusers...) are for developers: shown with --debug
                    warnings.simplefilter("ignore")
                runner = batch_runner or run_batch
                batch = runner(plan, skip_existing, overwrite, on_job_start, on_job_done, debug)
        finally:
            interrupts.finishing()  # from here on a signal is counted, not raised: the report gets written
            messages.set_sink(None)
        if share.distributed:
            failed = finish_distributed(batch, share, all_jobs, plan.report, console)
        else:
            failed = _summarise(batch, plan.report, console)
    if batch.interrupted or interrupts.received:
        exit_after_interrupt(console, interrupts.name)
    if failed:
        leave(1)


def _summarise(batch: Any, report: Any, console: Any) -> bool:
    """Write the report (a failure to write it is one line, not the end of the summary) and print the summary;
    True when something failed."""
    from studio.errors import StudioError
    from studio.runner import write_report

    written = report is not None
    if report is not None:
        try:
            write_report(report, batch)
        except StudioError as exc:
            console.print(f"[red]report not written:[/] {exc}")
            written = False
    console.print(batch.summary() + (f"; report: {report}" if written else ""))
    return bool(batch.failed) or (report is not None and not written)


def _display(console: Any, total: int) -> tuple[Any, Any, Any]:
    """The progress bars, and the batch callbacks that move them and print one line per finished file."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    batch_task = progress.add_task("images", total=total)
    image_task = progress.add_task("", total=1, visible=False)

    def on_job_start(job, index, total):
        progress.update(image_task, description=job.source.name, completed=0, total=1, visible=True)

        def step(done: int, total_steps: int) -> None:
            progress.update(image_task, completed=done, total=total_steps)

        return step

    def on_job_done(result) -> None:
        progress.advance(batch_task)
        if result.status == "failed":
            console.print(f"[red]failed:[/] {result.error}")
        elif result.status == "skipped":
            console.print(f"[dim]skipped:[/] {result.input} (output exists)")
        else:
            console.print(
                f"[green]ok:[/] {result.input} -> {result.output} "
                f"({result.output_size[0]}x{result.output_size[1]}, {result.engine}, {result.seconds:.1f} s)"
            )

    return progress, on_job_start, on_job_done
