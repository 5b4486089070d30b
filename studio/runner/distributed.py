"""Spread one `studio restore` batch over the processes `accelerate launch` starts: GPUs of one box, or machines.

Every process expands the same inputs into the same sorted job list and takes every N-th job
(round-robin, so large and small files mix), writes its outputs atomically as a plain run does, and at
the end the results of all processes are gathered (accelerate's `gather_object`, so no shared folder is
needed for the report) into one report on the main process, each file once with the index of the
process that handled it. A crashed or stopped process loses only its unfinished files: `--skip-existing`
on a re-run keeps every output already written, by any process.

Run plainly (no launcher, or one process) nothing changes: one share holding every job.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Share:
    """Which part of a batch this process owns."""

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    def select(self, jobs: list[T]) -> list[T]:
        """This process's jobs: every `count`-th one, starting at `index`."""
        return jobs[self.index :: self.count]


def current_share() -> Share:
    """The share of this process: from accelerate when a launcher started several processes, else all jobs.

    With GPUs, accelerate's state also makes each process's default CUDA device its own local GPU.
    `WORLD_SIZE` is set by accelerate's torch launcher (`--multi_gpu`, also on CPU-only machines) and
    torchrun; accelerate 1.x's `--cpu` flag alone starts a single process (several need MPI).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Share()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU-only machines: processes talk over gloo
    return Share(state.process_index, state.num_processes)


def merge_reports(parts: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """One report from every process's report: files in batch order, each once, with its process index."""
    position = {name: i for i, name in enumerate(order)}
    files: dict[str, dict[str, Any]] = {}
    for part in parts:
        for entry in part["files"]:
            files.setdefault(entry["input"], {**entry, "process": part["process"]})
    merged_files = sorted(files.values(), key=lambda entry: position.get(entry["input"], len(position)))
    statuses = [entry["status"] for entry in merged_files]
    merged = {key: value for key, value in parts[0].items() if key not in ("files", "process", "summary")}
    merged["summary"] = {
        "total": len(merged_files),
        "succeeded": statuses.count("ok"),
        "failed": statuses.count("failed"),
        "skipped": statuses.count("skipped"),
        "processes": len(parts),
    }
    merged["files"] = merged_files
    return merged


def gather_report(report_json: str, share: Share, order: list[str]) -> dict[str, Any]:
    """Every process's report merged into one; collective, so every process must call it."""
    part = {**json.loads(report_json), "process": share.index}
    if not share.distributed:
        return merge_reports([part], order)
    from accelerate.utils import gather_object

    return merge_reports(gather_object([part]), order)
