"""Peak memory of the stablesr and supir engines from 1 to 16 MP output, through their real tiling paths.

The real architectures take hours per 16 MP image on a CPU, so each engine runs its toy-width random
components (the ones its tests use: tests/stablesr_tiny.py, random_sdxl.TINY_UNET_CONFIG) through the
engine's own `restore`: Lanczos stage 1 (2x), latent tiles (--tile, --tile-overlap forced), tiled VAE
encode and decode, then the runner's whole-image wavelet colour fix. The engines pick their VAE tile
from the device's free memory; the worker reports --free-gb instead of the machine's RAM (what a GPU
with that much free memory would make them do), which turns VAE tiling on at every size measured.

Each (engine, size) runs in a fresh worker process (this script with --worker) with glibc told to mmap
and so hand back every block of 64 KiB or more (see bench_sd_x4.py). A worker builds and loads the
models, runs a small warm-up restore, takes the resident set then as its baseline and reports the
high-water mark above it (VmHWM, reset through /proc/self/clear_refs): for the engine's restore, and
for restore + colour fix. It also reports the full-size float32 buffers that any restore must hold
(the stage-1 image and the output, 12 bytes per output pixel each) and the peak minus those.

    python benchmarks/bench_diffusion_memory.py                         # both engines, 1/4/9/16 MP (hours on 2 cores)
    python benchmarks/bench_diffusion_memory.py --engines supir --sides 1024,2048
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny StableSR builders live with the tests that use them

MB = 2**20
WARMUP_SIDE = 128


def status_bytes(field: str) -> int:
    """One of this process's /proc/self/status sizes (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak() -> int:
    """Set VmHWM to the current resident set and return it."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def build_engine(name: str, folder: Path, tile: int, overlap: int) -> Any:
    """The engine on toy-width random weights saved in `folder`, 1 step, tiles forced, Lanczos stage 1."""
    from studio.settings import Settings, apply_layer

    flags: dict[str, Any] = {"steps": 1, "seed": 0, "stage1": "lanczos", "tile": tile, "tile_overlap": overlap}
    if name == "stablesr":
        from stablesr_tiny import write_base, write_official_files

        from studio.engines.diffusion.stablesr import StableSREngine

        adapter, _cfw = write_official_files(folder / "official")
        flags.update(engine="stablesr", model=str(write_base(folder / "sd2")), adapter=str(adapter), guidance=1.0)
        return StableSREngine(apply_layer(Settings(), flags, "cli"))
    from studio.engines.diffusion import random_sdxl
    from studio.engines.diffusion.supir import SupirEngine

    pipe = random_sdxl.build_base(random_sdxl.TINY_UNET_CONFIG)
    random_sdxl.save_base(pipe, folder / "base")
    random_sdxl.build_controlnet(pipe.unet, pipe.vae_scale_factor).save_pretrained(folder / "controlnet")
    flags.update(
        engine="supir", model=str(folder / "base"), adapter=str(folder / "controlnet"), min_side=0, prompt="a photo"
    )
    return SupirEngine(apply_layer(Settings(), flags, "cli"))


def restore_and_fix(engine: Any, image: np.ndarray) -> tuple[np.ndarray, int]:
    """The engine's restore (2x) then the runner's wavelet colour fix; returns (image, engine-only peak)."""
    from studio.ops.colorfix import apply_color_fix
    from studio.ops.resize import resize

    restored = engine.restore(image, 2.0).image
    engine_peak = status_bytes("VmHWM")
    reference = engine.color_reference()
    if reference is None:
        reference = resize(image, *restored.shape[:2], "bicubic")
    return apply_color_fix("wavelet", restored, reference), engine_peak


def worker(name: str, side: int, tile: int, overlap: int, free_gb: float) -> dict[str, Any]:
    import torch

    import studio.devices

    torch.set_num_threads(2)
    studio.devices.free_memory_bytes = lambda device: int(free_gb * 2**30)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        engine = build_engine(name, Path(folder), tile, overlap)
        restore_and_fix(engine, rng.random((WARMUP_SIDE // 2, WARMUP_SIDE // 2, 3), dtype=np.float32))
        image = rng.random((side // 2, side // 2, 3), dtype=np.float32)
        baseline = reset_peak()
        start = time.perf_counter()
        out, engine_peak = restore_and_fix(engine, image)
        seconds = time.perf_counter() - start
        total_peak = status_bytes("VmHWM")
    info = engine.provenance()
    full_size = 2 * out.nbytes  # the stage-1 image and the output, float32
    return {
        "engine": name,
        "output": f"{out.shape[1]}x{out.shape[0]}",
        "megapixels": round(out.shape[0] * out.shape[1] / 1e6, 2),
        "latent_tile": info.get("tile"),
        "tile_overlap": info.get("tile_overlap"),
        "vae_tile": info.get("vae_tile"),
        "seconds": round(seconds, 1),
        "baseline_mb": round(baseline / MB),
        "engine_peak_mb": round((engine_peak - baseline) / MB),
        "peak_with_colour_fix_mb": round((total_peak - baseline) / MB),
        "full_size_buffers_mb": round(full_size / MB),
        "engine_peak_minus_full_size_mb": round((engine_peak - baseline - full_size) / MB),
    }


def run_worker(name: str, side: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--worker", name, str(side), "--tile", str(args.tile)]
    command += ["--tile-overlap", str(args.tile_overlap), "--free-gb", str(args.free_gb)]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{name} {row['output']}: {row['seconds']} s, engine peak {row['engine_peak_mb']} MB", file=sys.stderr)
    return row


def growth(rows: list[dict[str, Any]], key: str) -> float | None:
    """Largest output's figure over the smallest's."""
    return round(rows[-1][key] / rows[0][key], 2) if rows and rows[0][key] > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="stablesr,supir")
    parser.add_argument("--sides", default="1024,2048,3072,4096", help="square output sides in pixels")
    parser.add_argument("--tile", type=int, default=256, help="--tile forced on the engines (output pixels)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="--tile-overlap forced (output pixels)")
    parser.add_argument("--free-gb", type=float, default=1.0, help="free device memory the engines are told")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.tile, args.tile_overlap, args.free_gb)))
        return
    report: dict[str, Any] = {
        "forced": {"tile": args.tile, "tile_overlap": args.tile_overlap, "free_gb": args.free_gb, "steps": 1},
    }
    for name in args.engines.split(","):
        rows = [run_worker(name, int(side), args) for side in args.sides.split(",")]
        report[name] = {
            "runs": rows,
            "engine_peak_growth": growth(rows, "engine_peak_mb"),
            "peak_with_colour_fix_growth": growth(rows, "peak_with_colour_fix_mb"),
            "growth_minus_full_size": growth(rows, "engine_peak_minus_full_size_mb"),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
