"""GPU figures the README lacks: each engine's own `restore` from 512 to 2048 px on real-size random-weight models,
its seconds and its peak `torch.cuda.max_memory_allocated`, each engine in a fresh process (its own peak).

- fast: Real-ESRGAN x4plus (the real bundled weights) in torch, fp16 on CUDA;
- sd-x4: the real SD x4 upscaler architecture (configs/sd-x4), random weights, saved as a diffusers folder;
- stablesr: a random full StableSR file in the official layout at full size (every key and shape of
  stablesr_000117.ckpt, tests/fixtures/stablesr_keys_512.json) run on its own (`--model FILE`), fp16 values;
- supir: SDXL's UNet and VAE at full size (toy text encoders: prompts are encoded once) with a random
  SUPIR-v0Q-layout file (tests/fixtures/supir_keys.json), fp16 values.
Each worker builds its files (on the device, so it takes seconds), loads them through the engine (timed:
`load_and_warmup_s`: the first restore, of a 64 px input), then restores the 512 px astronaut crop 4x at the engine's
defaults (`restore_s`, `peak_allocated_gb` above what the loaded model holds: `model_gb`).

`--toy` runs the same path at toy width, 32 -> 128 px, 2 steps (tests/support builders): it checks the script on a
CPU in seconds (tests/benchmarks/test_gpu_figures.py); its figures mean nothing.

    python benchmarks/gpu_figures.py --device cuda --json out.json      # benchmarks/gpu_suite.sh runs this
    python benchmarks/gpu_figures.py --device cpu --toy --engines fast,stablesr
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
ENGINES = ("fast", "sd-x4", "stablesr", "supir")
LIMITS_S = {"fast": 40, "sd-x4": 70, "stablesr": 80, "supir": 110}
"""Seconds each engine may take on the GPU, building its files included: 300 s in all (gpu_suite.sh's share)."""
FIXTURES = ROOT / "tests" / "fixtures"


def random_state(keys: dict[str, list[int]], device: str, dtype: Any) -> dict[str, Any]:
    import torch

    return {k: (torch.randn(s, device=device, dtype=dtype) * 0.02).cpu() for k, s in keys.items()}


def build_sd_x4(work: Path, device: str, toy: bool) -> dict[str, Any]:
    import diffusers
    import torch

    from studio.testing import tiny_sd

    if toy:
        components = tiny_sd.build_components(tiny_sd.TINY_UNET_CONFIG, tiny_sd.TINY_VAE_CONFIG)
        return {"model": str(tiny_sd.save_as_diffusers_folder(components, work / "sd_x4"))}
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.diffusion.clip_tokenizer import clip_tokenizer

    configs = tiny_sd.real_configs()
    with torch.device(device):
        pipe = diffusers.StableDiffusionUpscalePipeline(
            vae=diffusers.AutoencoderKL.from_config(configs["vae"]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
            tokenizer=clip_tokenizer(),
            unet=diffusers.UNet2DConditionModel.from_config(configs["unet"]),
            low_res_scheduler=diffusers.DDPMScheduler.from_config(configs["low_res_scheduler"]),
            scheduler=diffusers.DDIMScheduler.from_config(configs["scheduler"]),
            max_noise_level=350,
        )
    pipe.to(dtype=torch.float16).save_pretrained(work / "sd_x4", safe_serialization=True)
    return {"model": str(work / "sd_x4")}


def build_stablesr(work: Path, device: str, toy: bool) -> dict[str, Any]:
    import torch

    path = work / "stablesr_full.ckpt"
    if toy:
        from support.stablesr_tiny import write_full_file

        return {"model": str(write_full_file(path))}
    keys = json.loads((FIXTURES / "stablesr_keys_512.json").read_text())["keys"]
    torch.save({"state_dict": random_state(keys, device, torch.float16)}, path)
    return {"model": str(path)}


def build_supir(work: Path, device: str, toy: bool) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    from studio.testing import tiny_sdxl

    unet_config = tiny_sdxl.TINY_UNET_CONFIG if toy else tiny_sdxl.SDXL_UNET_CONFIG
    vae_config = tiny_sdxl.TINY_VAE_CONFIG if toy else tiny_sdxl.SDXL_VAE_CONFIG
    with torch.device("cpu" if toy else device):
        pipe = tiny_sdxl.build_base(unet_config, vae_config=vae_config)
    tiny_sdxl.save_base(pipe if toy else pipe.to(dtype=torch.float16), work / "sdxl")
    del pipe
    keys = json.loads((FIXTURES / ("supir_tiny_keys.json" if toy else "supir_keys.json")).read_text())["keys"]
    save_file(random_state(keys, "cpu" if toy else device, torch.float16), str(work / "supir.safetensors"))
    return {"model": str(work / "sdxl"), "adapter": str(work / "supir.safetensors")}


def toy_stablesr_configs() -> None:
    """At toy width the full file is not SD 2.1's size: its toy configs stand in for the shipped ones."""
    from support.stablesr_tiny import tiny_module_configs

    from studio.engines.stablesr import components, selection

    components.shipped_configs = selection.shipped_configs = lambda prediction="epsilon": tiny_module_configs()


def crop(side: int) -> Any:
    import numpy as np
    from skimage import data

    image = data.astronaut()
    return np.ascontiguousarray(image[: min(side, 512), : min(side, 512)], dtype=np.float32)[:side, :side] / 255


class Memory:
    """Peak bytes allocated by torch on the device (CUDA's allocator statistics; None on a CPU)."""

    def __init__(self, device: Any) -> None:
        self.cuda = device.type == "cuda"

    def held(self) -> int | None:
        import torch

        return torch.cuda.memory_allocated() if self.cuda else None

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int | None:
        import torch

        if not self.cuda:
            return None
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()


def worker(name: str, device_name: str, toy: bool, work: Path) -> dict[str, Any]:
    """Build, load, warm up and time one engine; the figures as a dict."""
    import torch

    from studio.devices import resolve_device
    from studio.engines import engine_class
    from studio.settings import resolve

    device = resolve_device(device_name)
    builders = {"sd-x4": build_sd_x4, "stablesr": build_stablesr, "supir": build_supir}
    start = time.perf_counter()
    files = builders[name](work, device_name, toy) if name in builders else {"model": "realesrgan-x4plus"}
    built_s = time.perf_counter() - start
    if toy and name == "stablesr":
        toy_stablesr_configs()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    values: dict[str, Any] = {"engine": name, "device": device_name, "seed": 1, "tile_overlap": 32, **files}
    if name in ("stablesr", "supir"):
        values["stage1"] = "lanczos"
    if toy and name != "fast":
        values.update(steps=2, **({"min_side": 0} if name == "supir" else {}))  # seconds on a CPU
    settings = resolve(values)
    engine_class(name).check_files(settings)
    engine = engine_class(name)(settings)
    memory = Memory(device)
    side = 32 if toy else 512
    start = time.perf_counter()
    engine.restore(crop(16 if toy else 64), 4.0)  # loads, and warms the kernels up
    load_s = time.perf_counter() - start
    held = memory.held()
    memory.reset()
    start = time.perf_counter()
    result = engine.restore(crop(side), 4.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    restore_s = time.perf_counter() - start
    peak = memory.peak()
    details = result.provenance
    figures = {
        "engine": name,
        "input": [side, side],
        "output": list(result.image.shape[1::-1]),
        "steps": details.get("steps"),
        "dtype": details.get("dtype") or details.get("precision"),
        "build_s": round(built_s, 1),
        "load_and_warmup_s": round(load_s, 2),
        "restore_s": round(restore_s, 2),
    }
    if peak is not None and held is not None:
        figures.update(model_gb=round(held / 1024**3, 2), peak_allocated_gb=round(peak / 1024**3, 2))
        figures["peak_above_model_gb"] = round((peak - held) / 1024**3, 2)
    return figures


def run_worker(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", name, "--device", args.device, "--work", str(work)]
    command += ["--toy"] if args.toy else []
    limit = args.timeout or (600 if args.toy else LIMITS_S[name])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"engine": name, "error": f"timed out after {limit} s"}
    if done.returncode != 0:
        return {"engine": name, "error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--toy", action="store_true", help="toy width, 32 -> 128 px: checks the script on a CPU")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--timeout", type=int, help="seconds per engine (build, load, run); default: LIMITS_S")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.toy, args.work)))
        return
    import torch

    report: dict[str, Any] = {"device": args.device, "toy": args.toy, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    with tempfile.TemporaryDirectory() as folder:
        report["engines"] = [run_worker(name, args, Path(folder)) for name in args.engines.split(",")]
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
