"""`studio train`: fine-tune a super-resolution network on your own clean images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Fine-tune a super-resolution network (Real-ESRGAN x4plus by default) on your own images.

Pairs are made on the fly from your clean images with a degradation profile (or given with --lq), as
Real-ESRGAN trains: random crops, flips and rotations; L1 + VGG perceptual + U-Net GAN losses; an EMA
generator. Checkpoints go to OUTPUT_STEM.checkpoints/, the log to OUTPUT_STEM.train.json; Ctrl-C saves a
checkpoint and the same command with --resume continues exactly.

[bold]Examples[/]

  studio train scans/ -o newspaper-x4.safetensors --steps 20000

  studio train hq/ --lq lq/ -o mine.safetensors --base realesr-general-x4v3 --gan off

  studio train scans/ -o newspaper-x4.safetensors --steps 20000 --resume
"""


def train(
    inputs: Annotated[list[Path], typer.Argument(help="Clean image files and folders (searched recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The result, a .safetensors file.")],
    base: Annotated[
        str, typer.Option("--base", help="Starting weights: a registry name or a file.")
    ] = "realesrgan-x4plus",
    profile: Annotated[
        str, typer.Option("--profile", help="Degradation: realesrgan, old-photo, scan, jpeg.")
    ] = "realesrgan",
    lq: Annotated[
        Path | None, typer.Option("--lq", help="Low-quality partners of the clean images, same names.")
    ] = None,
    val: Annotated[
        Path | None, typer.Option("--val", help="Held-out pairs folder (hq/, lq/) from `studio degrade`.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser updates.")] = 50_000,
    gt_size: Annotated[int, typer.Option("--gt-size", help="Side of the clean crops, in pixels.")] = 256,
    batch: Annotated[int, typer.Option("--batch", help="Crops per micro-batch.")] = 8,
    accumulate: Annotated[int, typer.Option("--accumulate", help="Micro-batches per update.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-4,
    gan: Annotated[str, typer.Option("--gan", help="on: L1 + perceptual + GAN; off: a PSNR-oriented model.")] = "on",
    perceptual_weight: Annotated[float, typer.Option("--perceptual-weight", help="0 turns the VGG loss off.")] = 1.0,
    gan_weight: Annotated[float, typer.Option("--gan-weight")] = 0.1,
    ema_decay: Annotated[float, typer.Option("--ema-decay")] = 0.999,
    disc_features: Annotated[
        int, typer.Option("--disc-features", help="Discriminator width (Real-ESRGAN: 64; less trains faster).")
    ] = 64,
    val_every: Annotated[int, typer.Option("--val-every", help="Steps between validations.")] = 1000,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and data, same batches.")] = 0,
    min_images: Annotated[int, typer.Option("--min-images", help="Refuse fewer training images.")] = 500,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    mixed_precision: Annotated[
        str, typer.Option("--mixed-precision", help="auto (bf16/fp16 on a GPU, none on the CPU), no, fp16, bf16.")
    ] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh over an earlier result.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything and print the plan.")] = False,
) -> None:
    from studio.errors import UsageError
    from studio.train.loop import TrainOptions
    from studio.train.plan import make_plan
    from studio.train.session import train_with_progress

    if gan not in ("on", "off"):
        raise UsageError(f"--gan {gan!r}: expected on or off")
    if mixed_precision not in ("auto", "no", "fp16", "bf16"):
        raise UsageError(f"--mixed-precision {mixed_precision!r}: expected auto, no, fp16 or bf16")
    options = TrainOptions(
        base=base, profile=profile, steps=steps, gt_size=gt_size, batch=batch, accumulate=accumulate, lr=lr,
        gan=gan == "on", perceptual_weight=perceptual_weight, gan_weight=gan_weight, ema_decay=ema_decay, seed=seed,
        disc_features=disc_features,
    )  # fmt: skip
    plan = make_plan(list(inputs), output, options, lq, val, min_images, resume, overwrite)
    if dry_run:
        for line in plan.describe():
            typer.echo(line)
        typer.echo("dry run: every check passed; nothing was trained")
        return
    train_with_progress(plan, device, mixed_precision, val_every, checkpoint_every)
