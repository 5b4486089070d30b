"""A planned training run, carried out: the trainer built on its device, resumed, shown with a progress bar."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from typing import Any

from studio.devices import resolve_device
from studio.messages import notice
from studio.train import data, losses, state
from studio.train.loop import Schedule, Trainer, run
from studio.train.plan import TrainPlan


def mixed_precision_for(device: str, requested: str) -> str:
    """auto: bf16 where the GPU computes it natively, else fp16 on a GPU; full precision on the CPU."""
    if requested != "auto":
        return requested
    import torch

    if resolve_device(device).type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def build_trainer(plan: TrainPlan, device: str, mixed_precision: str) -> Trainer:
    """The trainer with the base network, the held-out pairs and (when weighted) the VGG loss; resumed if asked."""
    o = plan.options
    held_out = data.validation_samples(plan.held_out, o.gt_size, plan.scale, o.profile, o.seed)
    perceptual = losses.load_perceptual(plan.vgg_path) if plan.vgg_path else None
    target = str(resolve_device(device))
    model = copy.deepcopy(plan.descriptor.model)
    trainer = Trainer(
        model, plan.scale, o, plan.sources, held_out, perceptual, "cpu" if target == "cpu" else target,
        mixed_precision_for(device, mixed_precision),
    )  # fmt: skip
    if plan.resume_from is not None:
        trainer.restore(state.load_checkpoint(plan.resume_from, plan.fingerprint()))
        notice(f"resuming at step {trainer.step} from {plan.resume_from}")
    elif state.checkpoint_folder(plan.output).exists():
        shutil.rmtree(state.checkpoint_folder(plan.output))  # --overwrite: an earlier run's checkpoints
    return trainer


def provenance(plan: TrainPlan) -> dict[str, Any]:
    """What made the model: base weights and hash, data and its fingerprint, every option."""
    return {
        "base": plan.options.base,
        "base_file": str(plan.base_path),
        "base_sha256": plan.base_sha256,
        "architecture": plan.arch,
        "scale": plan.scale,
        "data_images": len(plan.sources),
        "data_sha256": data.folder_fingerprint(plan.sources),
        "held_out": [source.name for source in plan.held_out],
        "options": plan.fingerprint(),
    }


def train_with_progress(
    plan: TrainPlan, device: str, mixed_precision: str, val_every: int, checkpoint_every: int
) -> None:
    """Train with a progress bar (loss, steps/s, ETA), then print the start and final validation scores."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in plan.describe():
        console.print(line)
    trainer = build_trainer(plan, device, mixed_precision)
    schedule = Schedule(plan.output, val_every=val_every, checkpoint_every=checkpoint_every)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"))
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task("training", total=plan.options.steps, completed=trainer.step, rate="")
        on_step = _progress_callback(bar, task, trainer.step)
        log = run(trainer, schedule, plan.fingerprint(), provenance(plan), plan.arch, on_step)
    final = log.validations[-1] if log.validations else {}
    console.print(f"held-out pairs, starting weights: {_scores(log.start)}")
    console.print(f"held-out pairs, step {final.get('step', '?')}: {_scores(final)}")
    console.print(f"wrote {plan.output}; use it with `studio restore --model {plan.output}`")


def _progress_callback(bar: Any, task: Any, first: int) -> Callable[[int, dict[str, float]], None]:
    import time

    started = time.perf_counter()

    def on_step(step: int, terms: dict[str, float]) -> None:
        loss = sum(v for k, v in terms.items() if not k.startswith("d_"))
        rate = (step - first) / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=step, description=f"loss {loss:.4f}", rate=f"{rate:.2f} steps/s")

    return on_step


def _scores(scores: dict[str, Any]) -> str:
    shown = [f"{key} {scores[key]}" for key in ("psnr_y", "ssim_y", "lpips") if key in scores]
    return ", ".join(shown) or "none"
