"""Benchmark the onestep engine (OSEDiff) against the multi-step engines: UNet work, wall time, peak memory.

Part 1, counts (instant): UNet evaluations per output megapixel at each engine's defaults, counted from the
engines' own tiling policies over the shared grid: windows x branches (2 with classifier-free guidance) x
steps. Also latent cells evaluated per output MP (windows differ in size; SUPIR's are SDXL latents of its
>= 1024 px working image). ControlNet/adapter passes beside the UNet are not counted.

Part 2, time (CPU, or --device cuda): the onestep engine's own `restore` on the real SD 2.1-base UNet and
VAE (configs/stablesr: the SD 2.1 512 configs; random weights: same compute, no download) carrying random
OSEDiff-layout LoRA (rank 4 on the authors' targets), 4x from --sizes inputs; the text encoder is a
one-layer stand-in of the real width (prompts are encoded once per image). Time is split by forward hooks
into VAE encode, UNet and VAE decode. In the same run, one guided step of the stablesr engine's sampler at
the same output size (benchmarks/bench_stablesr.py's worker: SD 2.1 UNet + StableSR adapter, real size)
gives stablesr's end-to-end estimate: its default steps x that step + the same VAE encode and decode.

Part 3, peak memory 1 -> 16 MP (--memory): benchmarks/bench_diffusion_memory.py's device figure for the
onestep engine (toy-width random UNet, tiny photo VAE, forced tiles), largest output over smallest.

    python benchmarks/bench_onestep.py                                  # counts + CPU 64->256 px, fp32
    python benchmarks/bench_onestep.py --sizes 64 --fuse-lora --no-stablesr  # plain vs merged LoRA, one process
    python benchmarks/bench_onestep.py --sizes 64,128 --dtypes fp32,bf16
    python benchmarks/bench_onestep.py --device cuda --sizes 512 --json out.json   # 512 -> 2048 on a GPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: the OSEDiff target grouping lives with the tests

CONFIGS = ROOT / "configs" / "stablesr"
MB = 2**20
SIDES_MP = (1024, 2048, 4096)  # square outputs: 1, 4, 16 MP


# part 1 -------------------------------------------------------------------------------------------------------
def _windows(latent_h: int, latent_w: int, tile: int, overlap: int) -> tuple[int, int]:
    """(windows, latent cells) one denoiser call evaluates under a tiling (tile 0: one whole window)."""
    from studio.ops.tiling import tile_grid

    if not tile:
        return 1, latent_h * latent_w
    grid = tile_grid(latent_h, latent_w, tile, overlap, multiple=8)
    return len(grid), sum(w.height * w.width for w in grid)


def counts(sides: tuple[int, ...] = SIDES_MP) -> list[dict[str, Any]]:
    from studio.engines.onestep.engine import OneStepEngine
    from studio.engines.stablesr.engine import default_tiling
    from studio.engines.supir.knobs import choose_tiles, working_size
    from studio.settings import Settings

    settings = Settings()
    branches = 2 if settings.guidance > 1 else 1
    rows = []
    for side in sides:
        mp = side * side / 1e6
        latent = side // 8
        onestep_tiles = OneStepEngine.tiles(_Defaults(settings), (latent, latent), 1 << 40)  # type: ignore[arg-type]
        one = _windows(latent, latent, *onestep_tiles[:2])
        tile, overlap, _ = default_tiling(settings, (latent, latent), 8, 64, 1 << 40)
        sr = _windows(latent, latent, tile, overlap)
        work = working_size(side, side, settings.min_side, 8)
        tile, overlap, _ = choose_tiles(settings, work[0] // 8, work[1] // 8, 8, 2, 1 << 40)
        su = _windows(work[0] // 8, work[1] // 8, tile, overlap)
        row: dict[str, Any] = {"output": f"{side}x{side}"}
        for name, (windows, cells), steps, guided in (
            ("onestep", one, 1, 1),
            ("stablesr", sr, settings.steps, branches),
            ("supir", su, settings.steps, branches),
        ):
            row[f"{name}_unet_evals_per_mp"] = round(windows * steps * guided / mp, 2)
            row[f"{name}_latent_cells_per_mp"] = round(cells * steps * guided / mp)
        for other in ("stablesr", "supir"):
            row[f"{other}_over_onestep_cells"] = round(
                row[f"{other}_latent_cells_per_mp"] / row["onestep_latent_cells_per_mp"], 1
            )
        rows.append(row)
    return rows


class _Defaults:
    """The engine's tiling policy reads only `settings`: run it without loading a model."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


# part 2 -------------------------------------------------------------------------------------------------------
def real_model(device: Any, dtype: Any) -> Any:
    """OSEDiffModel-shaped: real SD 2.1-base UNet and VAE with random OSEDiff LoRA, stand-in text encoder."""
    import diffusers
    import torch
    from support.onestep_tiny import unet_groups, vae_targets

    from studio.diffusion.recipe import Components
    from studio.engines.onestep.lora import activate, add_lora
    from studio.engines.onestep.osediff import OSEDiffModel
    from studio.testing.tiny_sd import tiny_text_encoder, tiny_tokenizer

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet.json").read_text())).eval()
    vae = diffusers.AutoencoderKL.from_config(json.loads((CONFIGS / "vae.json").read_text())).eval()
    names = ("default_encoder", "default_decoder", "default_others")
    for name, targets in zip(names, unet_groups(unet).values(), strict=True):
        add_lora(unet, 4, targets, name)
    add_lora(vae, 4, vae_targets(vae), "default_encoder")
    activate(unet, list(names))
    activate(vae, ["default_encoder"])
    tokenizer = tiny_tokenizer()
    scheduler = diffusers.DDPMScheduler.from_config(json.loads((CONFIGS / "scheduler.json").read_text()))
    encoder = tiny_text_encoder(len(tokenizer), 1024)
    parts = Components(vae.to(device, dtype), encoder.to(device, dtype), tokenizer, unet.to(device, dtype), scheduler)

    class RandomOSEDiff(OSEDiffModel):
        def describe(self) -> dict[str, Any]:
            return {"weights_file": "random (benchmark)", "lora_rank_unet": 4, "lora_rank_vae": 4}

    return RandomOSEDiff(parts, "random", (4, 4), False)


def _timed(module: Any, totals: dict[str, float], key: str, sync: Any) -> None:
    """Add the seconds `module`'s forward takes to totals[key] (hooks, so the engine's own code runs)."""

    def before(*_: Any) -> None:
        sync()
        totals[f"_{key}"] = time.perf_counter()

    def after(*_: Any) -> None:
        sync()
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - totals.pop(f"_{key}")

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def time_onestep(sides: list[int], device_name: str, dtype_name: str, also_fused: bool = False) -> list[dict[str, Any]]:
    """The engine's restore (4x) at each input side, time split into VAE encode / UNet / VAE decode; with
    `also_fused`, each side again with the LoRA merged (--fuse-lora), in the same process."""
    import torch

    from studio.devices import compute_dtype
    from studio.diffusion.offload import Placement
    from studio.engines.onestep.engine import Loaded, OneStepEngine
    from studio.engines.onestep.lora import fuse
    from studio.engines.onestep.osediff import SPEC
    from studio.engines.onestep.recipe import OneStepRecipe
    from studio.settings import Settings, apply_layer

    device = torch.device(device_name)
    dtype = compute_dtype(device, dtype_name)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = real_model(device, dtype)
    totals: dict[str, float] = {}
    _timed(model.components.vae.encoder, totals, "vae_encode_s", sync)
    _timed(model.components.vae.decoder, totals, "vae_decode_s", sync)
    _timed(model.components.unet, totals, "unet_s", sync)
    engine = OneStepEngine(apply_layer(Settings(), {"engine": "onestep", "seed": 0, "device": device_name}, "cli"))
    recipe = OneStepRecipe(model, SPEC.facts, Placement("none", device), dtype)
    engine._loaded = Loaded(recipe, model, "sdpa", "random weights")
    engine.restore(np.zeros((16, 16, 3), np.float32), 4.0)  # warm-up

    def measure(side: int, label: bool) -> dict[str, Any]:
        totals.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        image = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
        start = time.perf_counter()
        result = engine.restore(image, 4.0)
        sync()
        row = {"engine": "onestep", "input": side, "output": result.image.shape[0], "dtype": str(dtype)[6:]}
        row.update(fused=label, seconds=round(time.perf_counter() - start, 2))
        row.update({key: round(value, 2) for key, value in totals.items()})
        row.update(tile=result.provenance["tile"], vae_tile=result.provenance["vae_tile"])
        if cuda:
            row["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / MB)
        print(json.dumps(row), file=sys.stderr)
        return row

    rows = [measure(side, False) for side in sides]
    if also_fused:  # the same model and inputs, LoRA merged in place: the ratio holds within this run
        fuse(model.components.unet)
        fuse(model.components.vae)
        rows += [measure(side, True) for side in sides]
    return rows


def stablesr_step(output_side: int, device: str, threads: int) -> float:
    """Seconds of one guided stablesr sampler step at `output_side` (bench_stablesr.py's worker, same run)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_stablesr.py"), "--worker", str(output_side)]
    command += ["--steps", "1", "--device", device, "--threads", str(threads)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_step"])


def compare(rows: list[dict[str, Any]], device: str, threads: int) -> list[dict[str, Any]]:
    """stablesr's estimate beside each fp32 onestep row: steps x measured guided step + the same VAE passes."""
    from studio.settings import Settings

    steps = Settings().steps
    out = []
    for row in rows:
        step = stablesr_step(row["output"], device, threads)
        vae = row.get("vae_encode_s", 0.0) + row.get("vae_decode_s", 0.0)
        estimate = steps * step + vae
        out.append(
            {
                "output": row["output"],
                "stablesr_step_s": round(step, 2),
                "stablesr_steps": steps,
                "stablesr_estimate_s": round(estimate, 1),
                "onestep_s": row["seconds"],
                "stablesr_over_onestep": round(estimate / row["seconds"], 1),
            }
        )
    return out


def memory() -> dict[str, Any]:
    """bench_diffusion_memory.py's device peak for onestep at 1, 4 and 16 MP."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_diffusion_memory.py"), "--engines", "onestep"]
    command += ["--sides", ",".join(map(str, SIDES_MP))]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64", help="input sides in pixels (outputs are 4x), comma-separated")
    parser.add_argument("--dtypes", default="fp32", help="fp32, bf16, fp16 (comma-separated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fuse-lora", action="store_true", help="also time each size with the LoRA merged (same run)")
    parser.add_argument("--no-stablesr", action="store_true", help="skip the stablesr step (time part)")
    parser.add_argument("--memory", action="store_true", help="also run part 3 (peak memory 1-16 MP)")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"device": args.device, "threads": args.threads, "counts": counts()}
    sizes = [int(s) for s in args.sizes.split(",")]
    report["time"] = [
        row for name in args.dtypes.split(",") for row in time_onestep(sizes, args.device, name, args.fuse_lora)
    ]
    if not args.no_stablesr:
        plain = [row for row in report["time"] if not row["fused"]]
        fp32 = [row for row in plain if row["dtype"] == "float32"] or plain[:1]
        report["versus_stablesr"] = compare(fp32, args.device, args.threads)
    if args.memory:
        report["memory"] = memory()
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
