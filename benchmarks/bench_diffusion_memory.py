"""Peak memory of the stablesr, supir and onestep engines from 1 to 16 MP output, through their real tiling paths.

The real architectures take hours per 16 MP image on a CPU, so each engine runs toy-width random components
(tests/support/stablesr_tiny.py; random_sdxl.TINY_UNET_CONFIG with the 8x tiny photo VAE of the tests) through the
engine's own `restore`: Lanczos stage 1 (2x), latent tiles (--tile, --tile-overlap forced, in pixels of
the image the model reads), tiled VAE encode and decode, then the runner's whole-image wavelet colour fix.
The engines pick their VAE tile from the device's free memory; the worker reports --free-gb instead of the
machine's RAM (what a GPU with that much free memory would make them do), which turns VAE tiling on.

Two figures per run, each size in a fresh worker process (this script with --worker):
- **device**: the peak of memory held by torch tensors above what the loaded models hold, recorded by
  torch's profiler (`profile_memory`). On a GPU every one of these tensors would live on the GPU: this is
  the CPU stand-in for `torch.cuda.max_memory_allocated()`. Host images (numpy arrays: the input, the
  stage-1 image, the output) are not in it.
- **process** (with --process): the resident-set high-water mark above the loaded models (VmHWM, reset
  through /proc/self/clear_refs), with glibc told to mmap and so hand back every block of 64 KiB or more:
  host images included. It is measured in a separate, unprofiled restore (twice the time).

    python benchmarks/bench_diffusion_memory.py                           # both engines, 1/4/16 MP
    python benchmarks/bench_diffusion_memory.py --engines supir --sides 1024,2048 --process
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
from torch_memory import torch_peak

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: the tiny StableSR builders live with the tests

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
        from support.stablesr_tiny import write_base, write_official_files

        from studio.engines.stablesr.engine import StableSREngine

        adapter, _cfw = write_official_files(folder / "official")
        flags.update(engine="stablesr", model=str(write_base(folder / "sd2")), adapter=str(adapter), guidance=1.0)
        return StableSREngine(apply_layer(Settings(), flags, "cli"))
    from diffusers import AutoencoderKL

    if name == "onestep":
        from support.onestep_tiny import write_osediff

        from studio.engines.onestep.engine import OneStepEngine

        photo_vae = AutoencoderKL.from_pretrained(ROOT / "tests" / "fixtures" / "tiny_photo_vae")
        base, adapter = write_osediff(folder, vae=photo_vae)
        flags.update(engine="onestep", model=str(base), adapter=str(adapter))
        return OneStepEngine(apply_layer(Settings(), flags, "cli"))

    from studio.engines.supir.engine import SupirEngine
    from studio.testing import tiny_sdxl as random_sdxl

    photo_vae = AutoencoderKL.from_pretrained(ROOT / "tests" / "fixtures" / "tiny_photo_vae")
    pipe = random_sdxl.build_base(random_sdxl.TINY_UNET_CONFIG, vae=photo_vae)
    random_sdxl.save_base(pipe, folder / "base")
    random_sdxl.build_controlnet(pipe.unet, pipe.vae_scale_factor).save_pretrained(folder / "controlnet")
    flags.update(
        engine="supir", model=str(folder / "base"), adapter=str(folder / "controlnet"), min_side=0, prompt="a photo"
    )
    return SupirEngine(apply_layer(Settings(), flags, "cli"))


def restore_and_fix(engine: Any, image: np.ndarray) -> tuple[np.ndarray, int, dict[str, Any]]:
    """The engine's restore (2x) then the runner's wavelet colour fix; returns (image, engine-only peak,
    provenance)."""
    from studio.ops.colorfix import apply_color_fix
    from studio.ops.resize import resize

    result = engine.restore(image, 2.0)
    restored = result.image
    engine_peak = status_bytes("VmHWM")
    reference = result.color_reference
    if reference is None:
        reference = resize(image, *restored.shape[:2], "bicubic")
    return apply_color_fix("wavelet", restored, reference), engine_peak, result.provenance


def worker(name: str, side: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import studio.devices

    torch.set_num_threads(2)
    studio.devices.free_memory_bytes = lambda device: int(args.free_gb * 2**30)
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {"engine": name}
    with tempfile.TemporaryDirectory() as folder:
        engine = build_engine(name, Path(folder), args.tile, args.tile_overlap)
        restore_and_fix(engine, rng.random((WARMUP_SIDE // 2, WARMUP_SIDE // 2, 3), dtype=np.float32))
        image = rng.random((side // 2, side // 2, 3), dtype=np.float32)
        if args.process:
            baseline = reset_peak()
            _, engine_peak, _ = restore_and_fix(engine, image)
            row.update(
                process_peak_mb=round((engine_peak - baseline) / MB),
                process_peak_with_colour_fix_mb=round((status_bytes("VmHWM") - baseline) / MB),
            )
        start = time.perf_counter()
        (out, _, info), device_peak = torch_peak(lambda: restore_and_fix(engine, image))
        row["seconds_profiled"] = round(time.perf_counter() - start, 1)
    row.update(
        output=f"{out.shape[1]}x{out.shape[0]}",
        megapixels=round(out.shape[0] * out.shape[1] / 1e6, 2),
        tile_px=info.get("tile"),
        latent_tile=info.get("latent_tile"),
        tile_overlap_px=info.get("tile_overlap"),
        vae_tile=info.get("vae_tile"),
        device_peak_mb=round(device_peak / MB, 1),
        output_float32_mb=round(out.nbytes / MB),
    )
    return row


def run_worker(name: str, side: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--worker", name, str(side), "--tile", str(args.tile)]
    command += ["--tile-overlap", str(args.tile_overlap), "--free-gb", str(args.free_gb)]
    command += ["--process"] if args.process else []
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"{name} {row['output']}: {row['seconds_profiled']} s, device peak {row['device_peak_mb']} MB, "
        f"process peak {row.get('process_peak_mb', '-')} MB",
        file=sys.stderr,
    )
    return row


def growth(rows: list[dict[str, Any]], key: str) -> float | None:
    """Largest output's figure over the smallest's."""
    return round(rows[-1][key] / rows[0][key], 2) if rows and rows[0][key] > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="stablesr,supir")
    parser.add_argument("--sides", default="1024,2048,4096", help="square output sides in pixels")
    parser.add_argument("--tile", type=int, default=256, help="--tile forced on the engines (output pixels)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="--tile-overlap forced (output pixels)")
    parser.add_argument("--free-gb", type=float, default=1.0, help="free device memory the engines are told")
    parser.add_argument("--process", action="store_true", help="also measure the process's peak resident set")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return
    report: dict[str, Any] = {
        "forced": {"tile": args.tile, "tile_overlap": args.tile_overlap, "free_gb": args.free_gb, "steps": 1},
    }
    for name in args.engines.split(","):
        rows = [run_worker(name, int(side), args) for side in args.sides.split(",")]
        report[name] = {
            "runs": rows,
            "device_peak_growth": growth(rows, "device_peak_mb"),
            "process_peak_growth": growth(rows, "process_peak_mb") if args.process else None,
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
