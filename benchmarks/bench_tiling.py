"""Benchmark latent tiling: UNet work, wall time and seam visibility, side by side in one run.

Prints one JSON object with three parts:

- work: UNet evaluations (latent cells per step) per output megapixel, as a ratio to the no-overlap
  minimum, for SD x4 inputs of 256-2048 px under several free-memory budgets, at the automatic tiling
  (`choose_latent_tiles`) and at the old one (128 tiles, overlap 32); likewise the VAE decode's work
  (statistics pass and padded tiles, `choose_vae_tile` vs the old 64 tiles). Counting only: cheap.
- time: seconds per step of a tiny UNet (SD's four-level layout at toy width, random weights) on the
  whole latent and on the policy's tiles, for latents where both fit, with --threads CPU threads.
- seams: a real photo's latent (the tiny photo VAE of tests/fixtures) noised half-way and denoised
  with DDIM by the tiny UNet, whole and tiled at several overlaps and both blend profiles. Reported:
  the mean and max difference tiled - whole of the decoded images (8-bit levels), and the seam excess:
  how much larger the pixel-to-pixel jump is across window edges in the tiled image than at the same
  places in the whole one (8-bit levels; 0 = no seam), and the seam ratio: how much more the error
  tiled - whole jumps across window edges than between any two neighbouring pixels (1 = no seam).
  Random UNet weights: the numbers show how the
  blend and overlap behave at tile borders, not a trained model's exact ones.

    python benchmarks/bench_tiling.py              # a few minutes on one CPU thread
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.diffusion import latent_tiling
from studio.diffusion.latent_tiling import choose_latent_tiles, tiled_denoiser, unet_work
from studio.diffusion.tiled_vae import choose_vae_tile, vae_work
from studio.ops.tiling import tile_grid

SD_X4_BYTES_PER_CELL_FP16 = 6_000 * 2
"""sd_x4's cost model: bytes per latent cell of one guided UNet call (6000 per dtype byte), at fp16."""
SD_X4_VAE_BYTES_PER_CELL = 1_000 * 4**2 * 4
"""sd_x4's cost model for its fp32 VAE: 1000 bytes per output pixel per dtype byte, 16 pixels a cell."""
OLD_VAE_TILE, VAE_PAD = 64, 16
BUDGETS_GIB = (1, 2, 4, 8)
SIDES = (256, 384, 512, 768, 1024, 1536, 2048)
OLD_TILE, OLD_OVERLAP = 128, 32
TINY_UNET = {
    "sample_size": 32,
    "in_channels": 8,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [32, 64, 64, 64],
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
}
"""The SD x4 UNet's layout (four levels, attention on the three lower ones) at toy width; latent + condition in."""


def work_table() -> list[dict[str, Any]]:
    """UNet work per output pixel over the no-overlap minimum, new policy vs old fixed tiles."""
    rows = []
    for gib in BUDGETS_GIB:
        budget = gib * 2**30 * 0.6  # sd_x4 plans with 60% of the free memory
        for side in SIDES:
            tile, overlap = choose_latent_tiles(side, side, budget, SD_X4_BYTES_PER_CELL_FP16)
            vae_tile = choose_vae_tile(side, side, budget, SD_X4_VAE_BYTES_PER_CELL, VAE_PAD)
            rows.append(
                {
                    "free_gib": gib,
                    "input_px": side,
                    "tile": tile,
                    "overlap": overlap,
                    "windows": len(tile_grid(side, side, tile, overlap, multiple=8)),
                    "work_ratio": round(unet_work(side, side, tile, overlap) / side**2, 3),
                    "old_work_ratio": round(unet_work(side, side, OLD_TILE, OLD_OVERLAP) / side**2, 3),
                    "vae_tile": vae_tile,
                    "vae_work_ratio": round(vae_work(side, side, vae_tile, VAE_PAD) / side**2, 3),
                    "old_vae_work_ratio": round(vae_work(side, side, OLD_VAE_TILE, VAE_PAD) / side**2, 3),
                }
            )
    return rows


def tiny_unet() -> Any:
    import diffusers
    import torch

    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel.from_config(TINY_UNET).eval()


def conditioned(unet: Any, condition: Any) -> Any:
    """The UNet as `model(x, t, cond, window)`: the window's crop of a spatial condition is concatenated,
    as the x4 upscaler concatenates its low-res image."""
    import torch

    def model(x: Any, t: Any, embeds: Any, window: Any = None) -> Any:
        crop = condition if window is None else condition[(..., *window.slices)]
        return unet(torch.cat([x, crop], 1), t, encoder_hidden_states=embeds, return_dict=False)[0]

    return model


def time_steps(side: int, repeats: int) -> dict[str, Any]:
    """Median seconds per step, whole latent vs the policy's tiles for a budget half the whole's need."""
    import torch

    unet = tiny_unet()
    g = torch.Generator().manual_seed(0)
    x, condition = torch.randn(1, 4, side, side, generator=g), torch.randn(1, 4, side, side, generator=g)
    embeds = torch.randn(1, 8, 32, generator=g)
    per_cell = 1.0  # any unit: the budget below is relative
    tile, overlap = choose_latent_tiles(side, side, side * side * per_cell / 2, per_cell)
    model = conditioned(unet, condition)
    variants = {"whole": model, "tiled": tiled_denoiser(model, side, side, tile, overlap)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for fn in variants.values():
            fn(x, torch.tensor(500), embeds)  # warm-up
        for _ in range(repeats):
            for name, fn in variants.items():  # interleaved, so load changes hit both alike
                start = time.perf_counter()
                fn(x, torch.tensor(500), embeds)
                times[name].append(time.perf_counter() - start)
    whole, tiled = statistics.median(times["whole"]), statistics.median(times["tiled"])
    return {
        "latent": side,
        "tile": tile,
        "overlap": overlap,
        "windows": len(tile_grid(side, side, tile, overlap, multiple=8)),
        "work_ratio": round(unet_work(side, side, tile, overlap) / side**2, 3),
        "whole_s": round(whole, 4),
        "tiled_s": round(tiled, 4),
        "time_ratio": round(tiled / whole, 3),
    }


def photo_latent(vae: Any) -> Any:
    """The astronaut (512 px, Lanczos to 1024) through the tiny photo VAE: a real photo's latent, 128x128."""
    import torch
    from PIL import Image
    from skimage import data

    from studio.diffusion import tiled_vae

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS))
    image = torch.from_numpy(photo.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    return tiled_vae.encode(vae, image) * vae.config.scaling_factor


def denoise(model: Any, latent: Any, embeds: Any, steps: int) -> Any:
    """Half-way img2img with DDIM (eta 0, deterministic): noise the latent to t=500, then denoise."""
    import torch
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(steps * 2)
    timesteps = scheduler.timesteps[steps:]
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
    x = scheduler.add_noise(latent, noise, timesteps[:1])
    for t in timesteps:
        x = scheduler.step(model(x, t, embeds), t, x, return_dict=False)[0]
    return x


def seam_excess(tiled: np.ndarray, whole: np.ndarray, edges_y: list[int], edges_x: list[int]) -> float:
    """Mean |jump| across window edges in `tiled` minus the same in `whole`, in 8-bit levels."""
    return round(255 * (_edge_jump(tiled, edges_y, edges_x) - _edge_jump(whole, edges_y, edges_x)), 3)


def seam_ratio(tiled: np.ndarray, whole: np.ndarray, edges_y: list[int], edges_x: list[int]) -> float:
    """How much the error tiled - whole jumps across window edges relative to everywhere (1: no seam)."""
    error = tiled - whole
    everywhere = (np.abs(np.diff(error, axis=0)).mean() + np.abs(np.diff(error, axis=1)).mean()) / 2
    return round(_edge_jump(error, edges_y, edges_x) / float(everywhere), 3)


def _edge_jump(image: np.ndarray, edges_y: list[int], edges_x: list[int]) -> float:
    rows = np.abs(image[edges_y] - image[[e - 1 for e in edges_y]]).mean() if edges_y else 0.0
    cols = np.abs(image[:, edges_x] - image[:, [e - 1 for e in edges_x]]).mean() if edges_x else 0.0
    return float(rows + cols) / (bool(edges_y) + bool(edges_x))


def seam_table(tile: int, overlaps: tuple[int, ...], steps: int) -> list[dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL

    from studio.diffusion import tiled_vae

    vae = AutoencoderKL.from_pretrained(ROOT / "tests" / "fixtures" / "tiny_photo_vae").eval()
    unet = tiny_unet()
    rows = []
    with torch.no_grad():
        latent = photo_latent(vae)
        side = latent.shape[-1]
        model = conditioned(unet, latent)
        embeds = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(2))

        def image(z: Any) -> np.ndarray:
            return tiled_vae.decode(vae, z / vae.config.scaling_factor)

        whole = image(denoise(model, latent, embeds, steps))
        for blend in ("feather", "gaussian"):
            for overlap in overlaps:
                grid = tile_grid(side, side, tile, overlap, multiple=8)
                tiled_model = tiled_denoiser(model, side, side, tile, overlap, blend)
                tiled = image(denoise(tiled_model, latent, embeds, steps))
                edges_y = sorted({e * 8 for w in grid for e in (w.top, w.bottom) if 0 < e < side})
                edges_x = sorted({e * 8 for w in grid for e in (w.left, w.right) if 0 < e < side})
                rows.append(
                    {
                        "blend": blend,
                        "tile": tile,
                        "overlap": overlap,
                        "windows": len(grid),
                        "mean_diff_8bit": round(float(np.abs(tiled - whole).mean()) * 255, 3),
                        "max_diff_8bit": round(float(np.abs(tiled - whole).max()) * 255, 2),
                        "seam_excess_8bit": seam_excess(tiled, whole, edges_y, edges_x),
                        "seam_ratio": seam_ratio(tiled, whole, edges_y, edges_x),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="1: on a shared machine more threads spin against each other"
    )
    parser.add_argument("--time-sides", default="64,96,128", help="latent sides timed whole vs tiled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seam-tile", type=int, default=64, help="latent tile for the seam runs (128x128 latent)")
    parser.add_argument("--overlaps", default="0,8,16,24", help="overlaps compared in the seam runs")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of the seam runs")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = work_table()
    result = {
        "policy": {
            "overlap": latent_tiling.LATENT_OVERLAP,
            "blend": latent_tiling.LATENT_BLEND,
            "min_tile": latent_tiling.MIN_LATENT_TILE,
        },
        "work": work,
        "worst_work_ratio_by_free_gib": {
            gib: max(r["work_ratio"] for r in work if r["free_gib"] == gib) for gib in BUDGETS_GIB
        },
        "time": [time_steps(int(s), args.repeats) for s in args.time_sides.split(",")],
        "seams": seam_table(args.seam_tile, tuple(int(o) for o in args.overlaps.split(",")), args.steps),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
