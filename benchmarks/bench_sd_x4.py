"""Benchmark the sd-x4 pipeline on the real SD x4 architecture (random weights: same compute, no download).

Prints one JSON object: seconds per image and per step, the share of time spent outside the UNet
(measured, and projected to --project-steps), and peak memory against input size with and without
latent tiling. CPU peak memory is the process's resident-set high-water mark above the loaded
weights (reset between runs through /proc/self/clear_refs); CUDA peak memory is torch's allocator peak.

    python benchmarks/bench_sd_x4.py                                # CPU, 32/64/96 px, 1 step, ~5 minutes
    python benchmarks/bench_sd_x4.py --device cuda --size 512       # 512 -> 2048, 25 steps, fp16/bf16
    python benchmarks/bench_sd_x4.py --flat-memory 256,512,1024,2048  # toy-width layout, memory vs size
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.engines.diffusion.loading import choose_dtype
from studio.engines.diffusion.offload import Placement
from studio.engines.diffusion.random_model import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_components,
    real_configs,
)
from studio.engines.diffusion.upscale_pipeline import UpscalePipeline, UpscaleRequest


def peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_bytes(device: Any, baseline: int) -> int:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 - baseline
    return -1


def resident_bytes(device: Any) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class UNetTimer:
    """Wraps unet.forward to add up the time spent inside it (synchronising on CUDA)."""

    def __init__(self, unet: Any, device: Any) -> None:
        import torch

        self.seconds = 0.0
        self.calls = 0
        inner = unet.forward

        def timed(*args: Any, **kwargs: Any) -> Any:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out

        unet.forward = timed


def run(pipeline: UpscalePipeline, timer: UNetTimer, size: int, steps: int, tile: int, overlap: int,
        vae_tile: int, vae_pad: int = 8) -> dict[str, Any]:
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    request = UpscaleRequest(prompt="a photo", negative_prompt="", steps=steps, guidance=4.0, noise_level=20,
                             seed=0, scheduler=None, unet_tile=tile, tile_overlap=overlap, vae_tile=vae_tile,
                             vae_pad=vae_pad)
    baseline = resident_bytes(pipeline.device)
    peak_reset(pipeline.device)
    timer.seconds, timer.calls = 0.0, 0
    start = time.perf_counter()
    out = pipeline(image, request)
    total = time.perf_counter() - start
    return {"input": size, "output": out.shape[0], "steps": steps, "tile": tile, "vae_tile": vae_tile,
            "seconds": round(total, 2), "unet_seconds": round(timer.seconds, 2), "unet_calls": timer.calls,
            "peak_memory_mb": round(peak_bytes(pipeline.device, baseline) / 2**20)}


def flat_memory(device: Any, sizes: list[int], untiled_max: int) -> list[dict[str, Any]]:
    """Peak memory against input size up to 2048 px with the toy-width x4 layout (the real one takes hours
    per 2048 px image on a CPU): tiled (128 latent tiles, 64 VAE tiles) at every size, untiled up to
    `untiled_max`. Shows the tiling machinery keeps memory flat; absolute figures are the toy model's."""
    import torch

    pipeline = UpscalePipeline(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), Placement("none", device),
                               torch.float32)
    timer = UNetTimer(pipeline.components.unet, device)
    run(pipeline, timer, 64, 1, 0, 0, 0)  # warm-up
    rows = []
    for size in sizes:
        rows.append(run(pipeline, timer, size, 1, 128, 16, 64, 16))
        if size <= untiled_max:
            rows.append(run(pipeline, timer, size, 1, 0, 0, 0))
    return rows


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", type=int, default=None, help="one input size (px); default: a small CPU series")
    parser.add_argument("--steps", type=int, default=None, help="default: 1 on CPU, 25 on CUDA")
    parser.add_argument("--tile", type=int, default=32, help="latent tile for the tiled runs")
    parser.add_argument("--project-steps", type=int, default=25)
    parser.add_argument("--flat-memory", default="", help="e.g. 256,512,1024,2048: toy-width memory series")
    parser.add_argument("--untiled-max", type=int, default=512, help="largest untiled size in --flat-memory")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(torch.get_num_threads())
    if args.flat_memory:
        sizes = [int(v) for v in args.flat_memory.split(",")]
        print(json.dumps({"device": str(device), "flat_memory": flat_memory(device, sizes, args.untiled_max)},
                         indent=2))
        return
    steps = args.steps or (25 if device.type == "cuda" else 1)
    dtype = choose_dtype(device)
    configs = real_configs()
    components = build_components(configs["unet"], configs["vae"])
    if dtype != torch.float32:
        components.unet.to(dtype)
        components.text_encoder.to(dtype)
    pipeline = UpscalePipeline(components, Placement("none", device), dtype)
    timer = UNetTimer(components.unet, device)
    report: dict[str, Any] = {"device": str(device), "dtype": str(dtype).replace("torch.", ""),
                              "threads": torch.get_num_threads(), "architecture": "configs/sd-x4 (random weights)"}
    run(pipeline, timer, 16, 1, 0, 0, 0)  # warm-up: first-call allocations and kernel selection
    if args.size:
        runs = [run(pipeline, timer, args.size, steps, 0, 0, 0)]
        big_tile = max(args.tile, 128)
        runs.append(run(pipeline, timer, args.size, steps, big_tile, big_tile // 8, 64, 16))
    else:
        runs = []
        for size in (32, 64, 96):
            runs.append(run(pipeline, timer, size, steps, 0, 0, 0))
            runs.append(run(pipeline, timer, size, steps, args.tile, args.tile // 4, args.tile))
    timing = next(r for r in runs if r["tile"] == 0 and r["input"] == (args.size or 64))
    outside = timing["seconds"] - timing["unet_seconds"]
    per_step = timing["unet_seconds"] / timing["steps"]
    report["timing"] = {
        "input": timing["input"], "output": timing["output"], "steps": timing["steps"],
        "seconds_per_image": timing["seconds"], "unet_seconds_per_step": round(per_step, 3),
        "share_outside_unet": round(outside / timing["seconds"], 4),
        f"share_outside_unet_projected_{args.project_steps}_steps": round(
            outside / (outside + per_step * args.project_steps), 4),
        f"seconds_per_image_projected_{args.project_steps}_steps": round(outside + per_step * args.project_steps, 1),
    }
    report["runs"] = runs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
