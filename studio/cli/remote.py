"""`studio restore --remote`: plan with the remote's verdict, confirm a paid batch, then run with the same display."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from studio.cli.dry_run import print_remote_plan
from studio.cli.progress import run_with_progress
from studio.messages import warn
from studio.settings import resolve


def restore_remotely(
    cli: dict[str, Any], inputs: list[Path], output: Path | None, output_is_folder: bool, run: dict[str, Any]
) -> bool:
    """Run the restore on the remote that `--remote` (or a config file) names; False when none does."""
    if not resolve(cli, run["config"]).remote:
        return False  # a local run: the client (httpx) stays unloaded
    from studio.remote import (
        announce_first_use,
        confirm_paid,
        jobs_to_send,
        plain_http_to_network,
        plan_remote,
        remote_target,
        run_remote_batch,
    )

    target = remote_target(cli, run["config"])
    if plain_http_to_network(target):
        warn(f"{target.label}: the token and images travel unencrypted over plain http; use https beyond your network")
    plan = plan_remote(
        target,
        cli,
        inputs,
        output,
        output_is_folder=output_is_folder,
        report=run["report"],
        overwrite=run["overwrite"],
        skip_existing=run["skip_existing"],
        config_file=run["config"],
        preset_dirs=list(run["preset_dir"] or []),
    )
    count = jobs_to_send(plan, run["skip_existing"])
    if run["dry_run"]:
        if print_remote_plan(plan, run["skip_existing"], count):
            raise typer.Exit(1)  # the real run would fail these files: same exit code
        return True
    confirm_paid(plan.provider, count, run["yes"], ask=lambda question: typer.confirm(question, err=True))
    announce_first_use(plan.provider, count)
    run_with_progress(plan, run["skip_existing"], run["overwrite"], bool(run["debug"]), batch_runner=run_remote_batch)
    return True
