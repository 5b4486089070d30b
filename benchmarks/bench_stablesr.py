"""Benchmark the stablesr engine's sampling: UNet work per output pixel at the default tiling, and time and
peak memory of guided denoising steps on the real SD 2.1 + StableSR architecture (random weights: same
compute, no download).

Part 1 (instant): UNet-evaluated latent pixels per output megapixel at the default tiling, divided by the
no-overlap minimum (every latent pixel once), for outputs from 0.25 to 16 MP, counted by running the real
tiling wrapper over a counting model.
Part 2: each output size runs in a fresh worker process (this script with --worker): it builds the SD 2.1
UNet and the StableSR adapter (encoder + 22 SPADE layers) from configs/stablesr, takes the memory held then
as the baseline, and runs --steps guided steps (batch 2) of the tiled, SPADE-modulated denoiser at the
default tiling; it reports seconds per step and the peak above the baseline (CPU: VmHWM reset through
/proc/self/clear_refs; CUDA: torch's allocator peak). The text encoder and the VAE are not part of it.

    python benchmarks/bench_stablesr.py                       # CPU: counts + 512 and 1024 px outputs, 1 step
    python benchmarks/bench_stablesr.py --tile 512            # the same with 512 px (64 latent) windows
    python benchmarks/bench_stablesr.py --sizes 512,1024,2048,4096 --device cuda --steps 25
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.settings import Settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "stablesr"
NATIVE = 64  # latent pixels: the 512 model's training size
REFERENCE = {"steps": 200, "tile": 64, "overlap": 32}  # the reference's aggregation sampling


def _tiling(height: int, width: int, tile_px: int | None = None) -> tuple[int, int]:
    """The engine's (tile, overlap) in latent pixels for an output of height x width (--tile in pixels)."""
    from studio.engines.stablesr.engine import default_tiling
    from studio.settings import apply_layer

    settings = Settings() if tile_px is None else apply_layer(Settings(), {"tile": tile_px}, "cli")
    tile, overlap, _ = default_tiling(settings, (height // 8, width // 8), 8, NATIVE, 1 << 40)
    return tile, overlap


def evaluation_ratio(height: int, width: int, tile: int, overlap: int) -> float:
    """Latent pixels the tiled denoiser feeds the model per step / latent pixels of the image."""
    import torch

    from studio.diffusion.latent_tiling import tiled_denoiser

    seen = [0]

    def counting(x: torch.Tensor, t: torch.Tensor, window: object = None) -> torch.Tensor:
        seen[0] += x.shape[-2] * x.shape[-1]
        return x

    denoiser = tiled_denoiser(counting, height, width, tile, overlap) if tile else counting
    denoiser(torch.zeros(1, 1, height, width), torch.tensor(999), None)
    return seen[0] / (height * width)


def counts() -> list[dict[str, object]]:
    rows = []
    for out_w, out_h in ((512, 512), (1024, 1024), (1920, 1080), (2048, 2048), (3000, 2000), (4096, 4096)):
        tile, overlap = _tiling(out_h, out_w)
        latent = (out_h // 8, out_w // 8)
        ratio = evaluation_ratio(*latent, tile, overlap)
        reference = evaluation_ratio(*latent, REFERENCE["tile"], REFERENCE["overlap"])
        rows.append(
            {
                "output": f"{out_w}x{out_h}",
                "megapixels": round(out_w * out_h / 1e6, 2),
                "tile": tile,
                "overlap": overlap,
                "unet_work_vs_minimum": round(ratio, 3),
                "reference_64_32_tiling_work_vs_minimum": round(reference, 3),
            }
        )
    return rows


def _peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(side: int, steps: int, device_name: str, tile_px: int | None) -> dict[str, object]:
    import diffusers
    import torch

    from studio.diffusion.conditioning import Conditioning
    from studio.diffusion.guidance import classifier_free_guidance
    from studio.diffusion.latent_tiling import tiled_denoiser
    from studio.engines.stablesr.networks import StableSRAdapter
    from studio.engines.stablesr.recipe import STRUCT_KEY, spade_unet

    device = torch.device(device_name)
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet.json").read_text()))
    adapter = StableSRAdapter.for_unet(unet)
    unet.to(device, dtype).eval()
    adapter.to(device, dtype).eval()
    adapter.attach(unet)
    latent = side // 8
    tile, overlap = _tiling(side, side, tile_px)
    z = torch.randn(1, 4, latent, latent, device=device, dtype=dtype)
    text = torch.zeros(1, 77, 1024, device=device, dtype=dtype)
    cond = Conditioning({"encoder_hidden_states": text, STRUCT_KEY: z}, {STRUCT_KEY: 1})
    denoiser = classifier_free_guidance(spade_unet(unet, adapter), cond, cond, 4.0)
    if tile:
        denoiser = tiled_denoiser(denoiser, latent, latent, tile, overlap)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        _peak_rss_reset()
        baseline = _peak_rss()
    start = time.perf_counter()
    with torch.no_grad():
        for step in range(steps):
            z = denoiser(z, torch.tensor(999 - step * 40, device=device), None)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = _peak_rss() - baseline
    seconds = (time.perf_counter() - start) / steps
    return {
        "output_px": side,
        "latent": latent,
        "tile": tile,
        "overlap": overlap,
        "device": device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "seconds_per_step": round(seconds, 2),
        "peak_above_weights_mb": round(peak / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024", help="output sides in pixels (square), comma-separated")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, help="tile in output pixels (default: the engine's choice)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker, args.steps, args.device, args.tile)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    runs = []
    for side in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(side),
                "--steps",
                str(args.steps),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
                *(["--tile", str(args.tile)] if args.tile else []),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    peaks = [r["peak_above_weights_mb"] for r in runs]
    print(
        json.dumps(
            {
                "unet_work_per_output_pixel": counts(),
                "default_steps": Settings().steps,
                "reference_steps": REFERENCE["steps"],
                "unet_calls_vs_reference": round(Settings().steps / REFERENCE["steps"], 3),
                "denoise_runs": runs,
                "peak_growth_smallest_to_largest": round(peaks[-1] / peaks[0], 2) if peaks and peaks[0] else None,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
