"""The end of a distributed `studio restore` (under `accelerate launch`): one report for all processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def finish_distributed(batch: Any, share: Any, all_jobs: list, report_path: Path | None, console: Any) -> bool:
    """Every process reports its own files; the main process writes the merged report and says the totals.

    Returns whether any file failed (in this process, or anywhere for the main process)."""
    from studio.io import write_text_atomic
    from studio.runner.distributed import gather_report

    console.print(f"process {share.index + 1}/{share.count}: {batch.succeeded}/{len(batch.results)} succeeded")
    merged = gather_report(batch.to_json(), share, [str(job.source) for job in all_jobs])
    if not share.is_main:
        return bool(batch.failed)
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(merged, indent=2, default=str))
    totals = merged["summary"]
    summary = f"{totals['succeeded']}/{totals['total']} succeeded over {share.count} processes"
    if totals["failed"]:
        summary += f", {totals['failed']} failed"
    if report_path is not None:
        summary += f"; report: {report_path}"
    console.print(summary)
    return bool(totals["failed"])
