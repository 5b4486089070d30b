"""Training speed of `studio train`: steps per second for a tiny Compact network and the real RRDB (x4plus).

Both run the real training step (pairs degraded on the fly from skimage photos, L1 + GAN with the U-Net
discriminator, EMA) in the same run; the perceptual loss is off (its VGG19 weights are not on build
machines; with them a step also runs VGG19 over both crops). Random weights: speed does not depend on
their values. Prints one JSON document.

    python benchmarks/bench_train.py                              # CPU, small crops
    python benchmarks/bench_train.py --device cuda --gt-size 256 --batch 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def _save_photos(folder: Path, size: int) -> None:
    """scikit-image's bundled photos, as the other benchmarks use them, resized to `size` on the long side."""
    from PIL import Image
    from skimage import data

    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        image = Image.fromarray(getattr(data, name)()[..., :3])
        image.thumbnail((size * 2, size * 2))
        image.save(folder / f"{name}.png")


def _network(kind: str) -> torch.nn.Module:
    if kind == "rrdb":  # Real-ESRGAN x4plus: 64 features, 23 blocks
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    from spandrel.architectures.Compact import Compact

    return Compact(num_feat=16, num_conv=4, upscale=4)


def _steps_per_second(kind: str, photos: Path, args: argparse.Namespace) -> dict:
    from studio.train import data
    from studio.train.loop import Trainer, TrainOptions

    torch.manual_seed(0)
    options = TrainOptions(base=kind, gt_size=args.gt_size, batch=args.batch, perceptual_weight=0.0, gan=True)
    sources = data.collect_sources([photos], None)
    trainer = Trainer(_network(kind), 4, options, sources, [], None, args.device)
    trainer.train_step()  # warm-up: allocations, kernel selection
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    rate = round(args.steps / seconds, 3)
    return {"network": kind, "steps": args.steps, "seconds": round(seconds, 2), "steps_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gt-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        photos = Path(folder)
        _save_photos(photos, max(args.gt_size, 160))
        rows = [_steps_per_second(kind, photos, args) for kind in ("tiny-compact", "rrdb")]
    report = {
        "device": args.device,
        "gt_size": args.gt_size,
        "batch": args.batch,
        "load_average_before": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "results": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
