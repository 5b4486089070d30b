"""Benchmark the sd-x4 pipeline on the real SD x4 architecture (random weights: same compute, no download).

Prints one JSON object: seconds per image and per step, the share of time spent outside the UNet
(measured, and projected to --project-steps), and peak memory against input size with and without
latent tiling. Each configuration runs in its own fresh worker process (this script with --worker),
so no run inherits memory that the allocator kept from another. A worker builds the model, takes what
it holds then as the baseline, runs a 16 px warm-up and the measured image, and reports the peak above
the baseline: on CPU the resident-set high-water mark (VmHWM, reset after loading through
/proc/self/clear_refs), on CUDA torch's allocator peak. CPU workers run --threads threads with glibc
told to mmap every block of 64 KiB or more (MALLOC_MMAP_THRESHOLD_) and so return it when freed:
without that the heap keeps freed tile activations and the resident set grows with the number of
tiles rather than with what is live (a 64 px tiled run read 363 MB instead of 142 MB). That costs
some speed (page faults), so CPU timings are slightly pessimistic.

    python benchmarks/bench_sd_x4.py                                # CPU, 32/64/96 px, 1 step, 5-10 minutes
    python benchmarks/bench_sd_x4.py --device cuda --size 512       # 512 -> 2048, 25 steps, fp16/bf16
    python benchmarks/bench_sd_x4.py --flat-memory 256,512,1024,2048  # toy-width layout, memory vs size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.devices import compute_dtype
from studio.diffusion.offload import Placement
from studio.engines.sd_x4.pipeline import UpscalePipeline, UpscaleRequest
from studio.testing.tiny_sd import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_components,
    real_configs,
)

WARMUP_SIZE = 16
"""Smaller than any measured input, so the warm-up never sets the peak; it absorbs first-call costs."""


@dataclass(frozen=True)
class RunConfig:
    """One measured configuration: what a worker process builds and runs."""

    size: int
    steps: int
    tile: int = 0
    overlap: int = 0
    vae_tile: int = 0
    vae_pad: int = 8
    model: str = "real"  # "real": configs/sd-x4; "tiny": the toy-width layout
    device: str = "cpu"
    threads: int = 2


def status_bytes(field: str) -> int:
    """One of this process's /proc/self/status sizes (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


class PeakMeter:
    """Peak memory above what the process holds once the model is loaded (loading transients excluded)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.baseline = status_bytes("VmRSS")

    def peak(self) -> int:
        """Highest usage since construction, minus the baseline."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.baseline
        return status_bytes("VmHWM") - self.baseline


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


def build_pipeline(config: RunConfig) -> UpscalePipeline:
    """The real architecture in the device's dtype, or the toy-width layout in fp32."""
    import torch

    device = torch.device(config.device)
    if config.model == "tiny":
        return UpscalePipeline(
            build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), Placement("none", device), torch.float32
        )
    dtype = compute_dtype(device)
    configs = real_configs()
    components = build_components(configs["unet"], configs["vae"])
    if dtype != torch.float32:
        components.unet.to(dtype)
        components.text_encoder.to(dtype)
    return UpscalePipeline(components, Placement("none", device), dtype)


def upscale(pipeline: UpscalePipeline, config: RunConfig) -> np.ndarray:
    """One random image of the configuration's size through the pipeline with its tiling."""
    image = np.random.default_rng(0).random((config.size, config.size, 3), dtype=np.float32)
    request = UpscaleRequest(
        prompt="a photo",
        negative_prompt="",
        steps=config.steps,
        guidance=4.0,
        noise_level=20,
        seed=0,
        scheduler=None,
        unet_tile=config.tile,
        tile_overlap=config.overlap,
        vae_tile=config.vae_tile,
        vae_pad=config.vae_pad,
    )
    return pipeline(image, request)


def measure(config: RunConfig) -> dict[str, Any]:
    """Worker body: build, warm up, time and measure one configuration in this (fresh) process."""
    import torch

    torch.set_num_threads(config.threads)
    pipeline = build_pipeline(config)
    meter = PeakMeter(pipeline.device)
    upscale(pipeline, RunConfig(WARMUP_SIZE, 1))
    timer = UNetTimer(pipeline.components.unet, pipeline.device)
    start = time.perf_counter()
    out = upscale(pipeline, config)
    total = time.perf_counter() - start
    return {
        "input": config.size,
        "output": out.shape[0],
        "steps": config.steps,
        "tile": config.tile,
        "vae_tile": config.vae_tile,
        "seconds": round(total, 2),
        "unet_seconds": round(timer.seconds, 2),
        "unet_calls": timer.calls,
        "baseline_mb": round(meter.baseline / 2**20),
        "peak_memory_mb": round(meter.peak() / 2**20),
    }


def run_worker(config: RunConfig) -> dict[str, Any]:
    """Run `config` in a fresh process whose glibc hands large freed blocks back (see the module docstring)."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(config))]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{config.size} px, tile {config.tile}: {row['seconds']} s, {row['peak_memory_mb']} MB", file=sys.stderr)
    return row


def flat_memory_configs(sizes: list[int], untiled_max: int, device: str, threads: int) -> list[RunConfig]:
    """Toy-width layout up to 2048 px (the real one takes hours per 2048 px image on a CPU): tiled (128 latent
    tiles, 64 VAE tiles) at every size, untiled up to `untiled_max`. Shows the tiling machinery keeps memory
    flat; absolute figures are the toy model's."""
    configs = []
    for size in sizes:
        configs.append(RunConfig(size, 1, 128, 16, 64, 16, "tiny", device, threads))
        if size <= untiled_max:
            configs.append(RunConfig(size, 1, model="tiny", device=device, threads=threads))
    return configs


def series_configs(args: argparse.Namespace, steps: int) -> list[RunConfig]:
    """Untiled and tiled runs of --size (large tiles, as on a GPU), or of a small CPU series."""
    common = {"steps": steps, "device": args.device, "threads": args.threads}
    if args.size:
        big_tile = max(args.tile, 128)
        return [
            RunConfig(args.size, **common),
            RunConfig(args.size, tile=big_tile, overlap=big_tile // 8, vae_tile=64, vae_pad=16, **common),
        ]
    configs = []
    for size in (32, 64, 96):
        configs.append(RunConfig(size, **common))
        configs.append(RunConfig(size, tile=args.tile, overlap=args.tile // 4, vae_tile=args.tile, **common))
    return configs


def timing_summary(timing: dict[str, Any], project_steps: int) -> dict[str, Any]:
    """Per-step UNet time and the share outside the UNet, measured and projected to `project_steps`."""
    outside = timing["seconds"] - timing["unet_seconds"]
    per_step = timing["unet_seconds"] / timing["steps"]
    projected = outside + per_step * project_steps
    return {
        "input": timing["input"],
        "output": timing["output"],
        "steps": timing["steps"],
        "seconds_per_image": timing["seconds"],
        "unet_seconds_per_step": round(per_step, 3),
        "share_outside_unet": round(outside / timing["seconds"], 4),
        f"share_outside_unet_projected_{project_steps}_steps": round(outside / projected, 4),
        f"seconds_per_image_projected_{project_steps}_steps": round(projected, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", type=int, default=None, help="one input size (px); default: a small CPU series")
    parser.add_argument("--steps", type=int, default=None, help="default: 1 on CPU, 25 on CUDA")
    parser.add_argument("--tile", type=int, default=32, help="latent tile for the tiled runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each worker")
    parser.add_argument("--project-steps", type=int, default=25)
    parser.add_argument("--flat-memory", default="", help="e.g. 256,512,1024,2048: toy-width memory series")
    parser.add_argument("--untiled-max", type=int, default=512, help="largest untiled size in --flat-memory")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # internal: one RunConfig as JSON
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(RunConfig(**json.loads(args.worker)))))
        return
    report: dict[str, Any] = {"device": args.device, "threads": args.threads}
    if args.flat_memory:
        sizes = [int(v) for v in args.flat_memory.split(",")]
        configs = flat_memory_configs(sizes, args.untiled_max, args.device, args.threads)
        report["flat_memory"] = [run_worker(config) for config in configs]
        print(json.dumps(report, indent=2))
        return
    import torch

    steps = args.steps or (25 if args.device == "cuda" else 1)
    report["dtype"] = str(compute_dtype(torch.device(args.device))).replace("torch.", "")
    report["architecture"] = "configs/sd-x4 (random weights)"
    runs = [run_worker(config) for config in series_configs(args, steps)]
    timing = next(r for r in runs if r["tile"] == 0 and r["input"] == (args.size or 64))
    report["timing"] = timing_summary(timing, args.project_steps)
    report["runs"] = runs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
