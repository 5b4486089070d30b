"""Everything `studio train` can check before the first step, checked: one line for each problem.

The output and its checkpoints, the numbers, the base network (loaded, so a foreign file fails here), the
images (count, sizes, pairs), the validation set, the VGG backbone and the free disk space. `--dry-run`
stops after this and prints the plan, so it gives the same verdict as the real run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import weights
from studio.engines.fast.backends import load_spandrel
from studio.errors import UsageError, WeightsMissing
from studio.lab.degradation_profiles import PROFILES
from studio.lab.evaluate import find_pairs, pairs_scale
from studio.train import data, losses, state
from studio.train.loop import TrainOptions

DISK_MARGIN = 1.2


@dataclass
class TrainPlan:
    options: TrainOptions
    output: Path
    base_path: Path
    base_sha256: str
    descriptor: Any  # spandrel ImageModelDescriptor
    sources: list[data.Source]
    held_out: list[data.Source]
    resume_from: Path | None
    vgg_path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def arch(self) -> str:
        return str(self.descriptor.architecture.id)

    def fingerprint(self) -> dict[str, Any]:
        return self.options.fingerprint(self.base_sha256, self.sources)

    def describe(self) -> list[str]:
        o = self.options
        params = sum(p.numel() for p in self.descriptor.model.parameters())
        losses_used = ["L1"] + (["perceptual (VGG19)"] if o.perceptual_weight > 0 else []) + (["GAN"] if o.gan else [])
        start = f"resume from {self.resume_from.name}" if self.resume_from else "start from the base weights"
        return [
            f"base: {o.base} ({self.arch} x{self.scale}, {params / 1e6:.2f} M parameters, {self.base_path})",
            f"data: {len(self.sources)} training images, {len(self.held_out)} held out; profile {o.profile}, "
            f"crops {o.gt_size} px, batch {o.batch} x {o.accumulate}",
            f"losses: {' + '.join(losses_used)}; Adam lr {o.lr:g} betas (0.9, 0.99); EMA {o.ema_decay}",
            f"steps: {o.steps}, {start}; result {self.output}",
            *self.notes,
        ]


def check_numbers(options: TrainOptions) -> None:
    o = options
    checks = [
        (o.steps >= 1, f"--steps {o.steps}: expected at least 1"),
        (o.batch >= 1 and o.accumulate >= 1, "--batch and --accumulate: expected at least 1"),
        (o.gt_size >= 32 and o.gt_size % 8 == 0, f"--gt-size {o.gt_size}: expected a multiple of 8, at least 32"),
        (o.lr > 0, f"--lr {o.lr:g}: expected a positive learning rate"),
        (0 <= o.ema_decay < 1, f"--ema-decay {o.ema_decay:g}: expected a value from 0 up to (not including) 1"),
        (min(o.pixel_weight, o.perceptual_weight, o.gan_weight) >= 0, "loss weights: expected 0 or more"),
        (o.profile in PROFILES, f"--profile {o.profile!r}: expected one of {', '.join(PROFILES)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def _check_output(output: Path, resume: bool, overwrite: bool) -> Path | None:
    if output.suffix.lower() != ".safetensors":
        raise UsageError(f"{output}: the result is a .safetensors file; name it so")
    found = state.latest_checkpoint(output)
    if resume:
        if found is None:
            raise UsageError(f"--resume: no checkpoint in {state.checkpoint_folder(output)}")
        return found
    if output.exists() and not overwrite:
        raise UsageError(f"{output} exists; pass --overwrite to replace it, or choose another -o")
    if found is not None and not overwrite:
        raise UsageError(
            f"{state.checkpoint_folder(output)} holds checkpoints of an earlier run; pass --resume to continue "
            "it or --overwrite to start afresh"
        )
    return None


def _validation(
    sources: list[data.Source], val_dir: Path | None, scale: int
) -> tuple[list[data.Source], list[data.Source]]:
    if val_dir is None:
        return data.split_validation(sources)
    pairs = find_pairs(val_dir, None, None)
    if (found := pairs_scale(pairs)) != scale:
        raise UsageError(f"--val {val_dir}: its pairs differ by x{found}, the base model by x{scale}")
    return sources, [data.Source(pair.name, pair.hq, pair.lq) for pair in pairs]


def _vgg(options: TrainOptions) -> Path | None:
    if options.perceptual_weight == 0:
        return None
    try:
        return losses.vgg_backbone_path()
    except WeightsMissing:
        raise UsageError(
            f"the perceptual loss needs torchvision's VGG19: run `studio weights pull {losses.VGG_BACKBONE}`, "
            "or pass --perceptual-weight 0"
        ) from None


def _check_disk(output: Path, descriptor: Any, options: TrainOptions) -> None:
    """Two checkpoints (model, EMA, Adam's two moments; the discriminator likewise) and the result must fit."""
    generator = sum(p.numel() for p in descriptor.model.parameters()) * 4
    critic = losses.UNetDiscriminator(features=options.disc_features) if options.gan else None
    disc = sum(p.numel() for p in critic.parameters()) * 4 if critic is not None else 0
    needed = int((state.KEEP_CHECKPOINTS * (4 * generator + 3 * disc) + generator) * DISK_MARGIN)
    folder = next(p for p in [output.parent, *output.parent.parents] if p.exists())
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UsageError(
            f"{folder}: {free / 2**20:,.0f} MiB free, checkpoints and the result need about {needed / 2**20:,.0f} MiB"
        )


def make_plan(
    inputs: list[Path],
    output: Path,
    options: TrainOptions,
    lq_dir: Path | None = None,
    val_dir: Path | None = None,
    min_images: int = data.GUIDE_MINIMUM,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainPlan:
    """Check everything that can be known before training, in the order a person would fix it."""
    check_numbers(options)
    resume_from = _check_output(output, resume, overwrite)
    base_path = weights.resolve(options.base, "sr")
    descriptor = load_spandrel(base_path)
    scale = int(descriptor.scale)
    if options.gt_size % scale or options.gt_size // scale < 16:
        raise UsageError(f"--gt-size {options.gt_size}: must divide by the model's scale x{scale} into at least 16 px")
    sources = data.collect_sources(inputs, lq_dir)
    data.check_sources(sources, options.gt_size, scale, min_images)
    sources, held_out = _validation(sources, val_dir, scale)
    data.check_sources(held_out, options.gt_size, scale, minimum=1)
    vgg_path = _vgg(options)
    _check_disk(output, descriptor, options)
    notes = []
    if len(sources) < data.GUIDE_MINIMUM:
        notes.append(f"note: {len(sources)} training images, fewer than the guide's {data.GUIDE_MINIMUM}")
    base_sha256 = weights.file_sha256(base_path)
    return TrainPlan(
        options, output, base_path, base_sha256, descriptor, sources, held_out, resume_from, vgg_path, notes
    )
