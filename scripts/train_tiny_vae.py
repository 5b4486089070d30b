"""Train the tiny photo VAE that the tests use as a stand-in for Stable Diffusion's.

A random VAE's round trip is noise, so nothing that depends on image content (a fidelity knob, tiled
versus whole encoding, seams) can be tested with one. This trains a small diffusers `AutoencoderKL`
with SD's shape (3 -> 4 latent channels, 8x downsampling, GroupNorm, a mid-block attention) for about
twenty minutes on CPU, on random crops of scikit-image's bundled photos, and saves it with `save_pretrained`.
Two photos are held out; their whole-image round-trip PSNR is printed and saved in training.json.

    python scripts/train_tiny_vae.py tests/fixtures/tiny_photo_vae

Deterministic for a given torch version and thread count (fixed seed, fixed step count).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from skimage import data

TRAIN_PHOTOS = (
    "astronaut",
    "rocket",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "motorcycle_left",
    "camera",
    "grass",
    "gravel",
    "brick",
)
HELD_OUT_PHOTOS = ("chelsea", "coffee")
SD_LIKE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
}
KL_WEIGHT = 1e-6  # Stable Diffusion's VAE used the same small weight: the KL only keeps the latent tame


def load_photo(name: str) -> torch.Tensor:
    """A bundled photo as a (3, H, W) float tensor in [-1, 1]; grey photos get three equal channels."""
    image = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return torch.from_numpy(image[..., :3].astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def training_pool(names: tuple[str, ...]) -> list[torch.Tensor]:
    """Each photo at full size and at half size, so crops cover both fine and coarse detail."""
    pool = []
    for name in names:
        photo = load_photo(name)
        pool.append(photo)
        pool.append(torch.nn.functional.interpolate(photo[None], scale_factor=0.5, mode="area")[0])
    return pool


def random_crops(pool: list[torch.Tensor], count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random size x size crops, each from a random photo, randomly flipped left-right."""
    crops = []
    for _ in range(count):
        photo = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crop = photo[:, top : top + size, left : left + size]
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.clamp(-1, 1) - b) ** 2).mean())
    return 10 * math.log10(4.0 / mse)


@torch.no_grad()
def round_trip_psnr(vae: AutoencoderKL, name: str) -> float:
    """PSNR of a whole held-out photo (cropped to a multiple of 8) through encode (mean) and decode."""
    photo = load_photo(name)
    h, w = photo.shape[1] // 8 * 8, photo.shape[2] // 8 * 8
    photo = photo[None, :, :h, :w]
    decoded = vae.decode(vae.encode(photo).latent_dist.mean).sample
    return psnr(decoded, photo)


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, pool: list[torch.Tensor]) -> float:
    """1 / std of the latent means over the training photos, as SD chose its 0.18215: unit-variance latents."""
    means = [
        vae.encode(photo[None, :, : photo.shape[1] // 8 * 8, : photo.shape[2] // 8 * 8]).latent_dist.mean
        for photo in pool
    ]
    return float(1.0 / torch.cat([m.flatten() for m in means]).std())


def train(steps: int, batch: int, crop: int, seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(**SD_LIKE_CONFIG)
    pool = training_pool(TRAIN_PHOTOS)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    started = time.monotonic()
    for step in range(1, steps + 1):
        images = random_crops(pool, batch, crop, generator)
        posterior = vae.encode(images).latent_dist
        decoded = vae.decode(posterior.sample(generator=generator)).sample
        loss = (decoded - images).abs().mean() + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == steps:
            print(
                f"step {step}/{steps}  loss {float(loss.detach()):.4f}  {time.monotonic() - started:.0f} s", flush=True
            )
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, pool))
    return vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="folder to save the VAE in (save_pretrained layout)")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = train(args.steps, args.batch, args.crop, args.seed)
    scores = {name: round(round_trip_psnr(vae, name), 2) for name in HELD_OUT_PHOTOS}
    vae.save_pretrained(args.output, safe_serialization=True)
    report = {"held_out_psnr_db": scores, "scaling_factor": vae.config.scaling_factor, **vars(args)}
    report["output"] = str(args.output)
    (args.output / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
