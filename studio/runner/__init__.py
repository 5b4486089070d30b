"""The runner: read -> choose engine -> restore -> faces -> colour fix -> write, for one job and batches.

The runner is the only place that composes engines: fallback when weights are missing or memory runs
out, faces on top of any background engine, colour fix and alpha around any engine. One module per
concern: `jobs` (inputs and output paths), `plan` (everything resolved and checked up front),
`choice` (engine choice and fallback), `recipe` (one picture), `batch` (one file and the loop),
`reports` (the JSON report).
"""

from studio.runner.batch import process_job, reproduce_command, run_batch
from studio.runner.choice import EngineCache, choose_engine, fallback_for
from studio.runner.jobs import Job, collect_jobs, default_report_path, folder_output_root, sidecar_path
from studio.runner.plan import Plan, check_settings, finalize_seed, plan_outputs, plan_run, prepare_settings
from studio.runner.recipe import Restored, restore_picture
from studio.runner.reports import BatchReport, JobResult, check_report_path, write_report

__all__ = [
    "BatchReport",
    "EngineCache",
    "Job",
    "JobResult",
    "Plan",
    "Restored",
    "check_report_path",
    "check_settings",
    "choose_engine",
    "collect_jobs",
    "default_report_path",
    "fallback_for",
    "finalize_seed",
    "folder_output_root",
    "plan_outputs",
    "plan_run",
    "prepare_settings",
    "process_job",
    "reproduce_command",
    "restore_picture",
    "run_batch",
    "sidecar_path",
    "write_report",
]
