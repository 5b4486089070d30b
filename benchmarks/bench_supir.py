"""supir engine: tiling work, per-step overhead outside the networks, on the real SDXL architecture.

Prints one JSON object:
- `tiling`: UNet evaluations per output megapixel at the engine's automatic tiling, as a ratio to the
  no-overlap minimum, for 1-16 MP outputs and 0.5 / 12 / 24 GB of free GPU memory (fp16), from the engine's
  own tile planner and the shared tile grid (arithmetic, no model runs);
- `overhead`: the real SDXL UNet + a tile ControlNet of SDXL's shape (random weights), two CLIP encoders
  at toy width and SDXL's VAE, one restore at a small size on this machine's CPU per dtype: seconds per
  step, seconds inside the UNet and ControlNet forwards, and the share of a step spent outside them
  (guidance, churn, restoration guidance, tiling, schedules). Each dtype runs in a fresh process; a dtype
  whose weights do not fit the free memory is skipped and says so;
- `activation`: per dtype, the peak memory of one guided (batch 2) UNet + ControlNet call held by torch
  tensors (torch_memory.py: what the call would hold on a GPU) at 32 and 64 latent px, and its growth per
  latent pixel per dtype byte: the figure the engine's tile planner assumes
  (`UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE`). CPU attention kernels are not CUDA's, so it checks the estimate's
  order, not its last digit.

    python benchmarks/bench_supir.py [--size 128] [--steps 2] [--dtypes bf16 fp32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch_memory import torch_peak

GB = 1024**3
PARAMETERS = 2_567_463_684 + 1_251_011_908  # SDXL UNet + its ControlNet


def tiling_table() -> list[dict]:
    """Latent pixels the UNet processes per step over the latent's own pixels (1.0 = no overlap)."""
    from studio.diffusion.latent_tiling import unet_work
    from studio.engines.supir.engine import SupirEngine
    from studio.settings import resolve

    engine = SupirEngine(resolve({}))
    rows = []
    for side in (1024, 2048, 3072, 4096):
        latent = side // 8
        for free_gb in (0.5, 12, 24):
            tile, overlap, vae_tile = engine.tiles(latent, latent, 8, 2, free_gb * GB)
            covered = unet_work(latent, latent, tile, overlap) if tile else latent * latent
            rows.append(
                {
                    "output_mp": round(side * side / 1e6, 1),
                    "free_gpu_gb": free_gb,
                    "latent_tile": tile,
                    "overlap": overlap,
                    "vae_tile": vae_tile,
                    "unet_work_vs_minimum": round(covered / (latent * latent), 3),
                }
            )
    return rows


def activation(recipe: object, sides: tuple[int, int] = (32, 64), vae_sides: tuple[int, int] = (32, 48)) -> dict:
    """Peak tensor memory of one guided UNet + ControlNet call and of one VAE decoder tile at two latent
    sizes, and their slopes (activations grow linearly with the area: attention runs in SDPA's
    memory-efficient kernels)."""
    import numpy as np
    import torch

    from studio.engines.supir.engine import UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE, VAE_BYTES_PER_PIXEL
    from studio.engines.supir.recipe import SupirRequest

    peaks, vae_peaks = {}, {}
    factor = recipe.components.vae_scale_factor
    for side in sides:
        image = np.random.default_rng(0).random((side * factor, side * factor, 3)).astype(np.float32)
        request = SupirRequest(prompt="a photo", steps=1, guidance=7.5, seed=0, control_scales=(1.0,))
        with torch.no_grad():
            cond, uncond = recipe.encode_prompt(request.prompt, "", True)
            generator = torch.Generator().manual_seed(0)
            cond, uncond = recipe.prepare_conditioning(image, request, cond, uncond, generator)
            denoiser = recipe.denoiser(request, cond, uncond, (side, side))
            x = torch.randn(1, 4, side, side, dtype=recipe.dtype)
            _, peaks[side] = torch_peak(lambda d=denoiser, x=x: d(x, torch.tensor([999.0])))
    vae = recipe.components.vae
    for side in vae_sides:
        z = torch.randn(1, 4, side, side, dtype=vae.dtype)
        with torch.no_grad():
            _, vae_peaks[side] = torch_peak(lambda z=z: vae.decode(z, return_dict=False)[0])
    small, large = sides
    slope = (peaks[large] - peaks[small]) / (large * large - small * small) / recipe.dtype.itemsize
    small, large = vae_sides
    vae_slope = (vae_peaks[large] - vae_peaks[small]) / ((large * large - small * small) * factor**2)
    return {
        "unet_peak_mb_by_latent_side": {side: round(peak / 2**20, 1) for side, peak in peaks.items()},
        "unet_bytes_per_latent_px_per_dtype_byte": round(slope),
        "unet_planner_estimate": UNET_BYTES_PER_PIXEL_PER_DTYPE_BYTE,
        "vae_dtype": str(vae.dtype).replace("torch.", ""),
        "vae_decode_peak_mb_by_latent_side": {side: round(peak / 2**20, 1) for side, peak in vae_peaks.items()},
        "vae_decode_bytes_per_output_px": round(vae_slope),
        "vae_planner_estimate": VAE_BYTES_PER_PIXEL,
    }


def gpu_estimate(bf16: dict) -> dict:
    """Peak GPU memory of a default 1024 -> 2048 run (fp16 UNet + ControlNet, bf16 VAE, text encoders off the
    GPU while sampling), from parameter counts and the activation slopes measured here in bf16 (2 bytes,
    as fp16): an estimate from CPU measurements, not a GPU measurement."""
    from studio.engines.supir.engine import AUTO_VAE_TILE, NATIVE_TILE, PARAMS, TEXT_ENCODER_PARAMS

    memory = bf16["activation"]
    weights = (PARAMS - TEXT_ENCODER_PARAMS) * 2
    unet = memory["unet_bytes_per_latent_px_per_dtype_byte"] * 2 * NATIVE_TILE**2
    context = AUTO_VAE_TILE + 2 * 16  # the decoder tile with its padding, latent px
    vae = memory["vae_decode_bytes_per_output_px"] * (context * 8) ** 2
    return {
        "weights_gb": round(weights / GB, 2),
        "sampling_activations_gb": round(unet / GB, 2),
        "vae_tile_activations_gb": round(vae / GB, 2),
        "estimated_peak_gb": round((weights + max(unet, vae)) / GB, 2),
        "target_gb": 10,
    }


def measure(dtype: str, size: int, steps: int) -> dict:
    """One restore with the real SDXL UNet and ControlNet shapes; times inside the networks by hooks."""
    import gc

    import numpy as np
    import torch

    from studio.devices import free_memory_bytes
    from studio.engines.supir.engine import SupirEngine
    from studio.settings import resolve
    from studio.testing import tiny_sdxl as random_sdxl

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    need = PARAMETERS * torch_dtype.itemsize * 1.3
    available = free_memory_bytes(torch.device("cpu"))
    if available < need:
        return {"dtype": dtype, "skipped": f"needs ~{need / GB:.0f} GB free, {available / GB:.0f} GB available"}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        torch.set_default_dtype(torch_dtype)  # build the random networks directly in the measured dtype
        pipe = random_sdxl.build_base(random_sdxl.SDXL_UNET_CONFIG, vae_config=random_sdxl.SDXL_VAE_CONFIG)
        random_sdxl.save_base(pipe, Path(folder) / "base")
        random_sdxl.build_controlnet(pipe.unet, 8).save_pretrained(Path(folder) / "controlnet")
        torch.set_default_dtype(torch.float32)
        del pipe
        gc.collect()
        engine = SupirEngine(
            resolve(
                {
                    "model": str(Path(folder) / "base"),
                    "adapter": str(Path(folder) / "controlnet"),
                    "min_side": 0,
                    "steps": steps,
                    "seed": 0,
                    "dtype": dtype,
                    "tile": 0,
                    "stage1": "lanczos",
                    "prompt": "a photo",
                }
            )
        )
        recipe = engine._load()
        inside = [0.0]
        started: dict[int, float] = {}
        for module in (recipe.components.unet, *recipe.components.controlnets):
            module.register_forward_pre_hook(lambda m, a: started.__setitem__(id(m), time.perf_counter()))
            module.register_forward_hook(
                lambda m, a, o: inside.__setitem__(0, inside[0] + time.perf_counter() - started[id(m)])
            )
        stamps: list[tuple[float, float]] = []  # (time, seconds inside the networks so far) after each step
        image = np.random.default_rng(0).random((size // 2, size // 2, 3)).astype(np.float32)
        begin = time.perf_counter()
        engine.restore(image, 2.0, progress=lambda done, total: stamps.append((time.perf_counter(), inside[0])))
        total = time.perf_counter() - begin
        memory = activation(recipe)
    # steps 2..n: the first step also encodes the prompt and the stage-1 image and warms the kernels up
    first, last = stamps[0] if steps > 1 else (begin, 0.0), stamps[steps - 1]
    loop, inside_loop = last[0] - first[0], last[1] - first[1]
    return {
        "dtype": dtype,
        "output_px": size,
        "latent_px": size // 8,
        "steps": steps,
        "seconds_per_step": round(loop / max(steps - 1, 1), 2),
        "seconds_in_networks_per_step": round(inside_loop / max(steps - 1, 1), 2),
        "outside_networks_share": round(1 - inside_loop / loop, 4),
        "total_seconds": round(total, 1),
        "activation": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="output side in pixels (latent = size / 8)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.steps)))
        return
    import torch

    overhead = []
    for dtype in args.dtypes:
        run = subprocess.run(
            [sys.executable, __file__, "--one", dtype, "--size", str(args.size), "--steps", str(args.steps)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        overhead.append(json.loads(lines[-1]) if lines else {"dtype": dtype, "failed": run.stderr[-400:]})
    print(
        json.dumps(
            {
                "machine": {"cpu_threads": torch.get_num_threads()},
                "tiling": tiling_table(),
                "overhead": overhead,
                "gpu_1024_to_2048_estimate": next(
                    (gpu_estimate(run) for run in overhead if run.get("dtype") == "bf16" and "activation" in run),
                    None,
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
