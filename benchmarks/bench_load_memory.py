"""Peak RAM while loading an official checkpoint: streamed (memory-mapped, one tensor at a time into the modules)
against the whole file read first (what studio did before), side by side in one run, each in a fresh process.

The file: a full StableSR 512 checkpoint in the official layout at full size (every key and shape of
stablesr_000117.ckpt, tests/fixtures/stablesr_keys_512.json: SD 2.1's UNet, VAE and text tower plus SPADE and
the time-aware encoder, 1.41 B parameters), random values stored in fp16 (2.8 GB). A real-size fp32 file
(5.6 GB) or SUPIR on SDXL (~19 GB resident) does not fit comfortably on the shared 24 GB build machine; this
is the largest official layout that does. Each worker builds the modules on the meta device from the shipped
configs (as `--model stablesr_000117.ckpt` does), loads the file into them in --dtype, reads every tensor
once (as the first forward pass or a move to the GPU does: a memory-mapped tensor is read only then), and reports:
- `peak_rss_gb`: the resident-set high-water mark while loading (VmHWM, reset through /proc/self/clear_refs
  after the imports), above the RSS before loading;
- `peak_anon_gb`: the highest anonymous memory while loading (sampled every 20 ms), above that before:
  the part the kernel cannot drop, so what runs a machine out of memory;
- `anon_gb` / `file_gb`: what is resident at the end as anonymous memory and as mapped file pages (page
  cache the kernel can drop: a memory-mapped parameter of the file's own dtype stays file-backed);
- `model_gb`: the bytes of every parameter and buffer of the loaded modules (the model in its run dtype);
- `estimate_gb`: the estimate `--dry-run` can make without reading a tensor (parameters of the meta modules
  times the dtype's bytes).

    python benchmarks/bench_load_memory.py                      # fp16 and fp32 (the CPU's); needs ~9 GB free
    python benchmarks/bench_load_memory.py --dtypes fp16        # ~2 minutes (writing the 2.8 GB file dominates)
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GB = 1024**3


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """The highest RssAnon seen, sampled every 20 ms in a thread: anonymous memory is what the kernel cannot
    drop (memory-mapped file pages it can), so it is what runs a machine out of memory."""

    def __init__(self) -> None:
        import threading

        self.peak = status_bytes("RssAnon")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, status_bytes("RssAnon"))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, status_bytes("RssAnon"))


def write_file(path: Path) -> int:
    import torch

    keys = json.loads((ROOT / "tests" / "fixtures" / "stablesr_keys_512.json").read_text())["keys"]
    generator = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=generator) * 0.02).half() for k, s in keys.items()}
    torch.save({"state_dict": state}, path)
    return path.stat().st_size


def whole_file(path: Path) -> dict[str, Any]:
    """The former reader: the whole checkpoint in memory before any module takes a tensor."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def worker(path: Path, mode: str, dtype_name: str) -> dict[str, Any]:
    import torch

    from studio.engines.stablesr.components import finish, standalone_components
    from studio.engines.stablesr.files import apply_file

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    components = standalone_components(dtype, "epsilon")
    modules = (components.unet, components.vae, components.text_encoder)
    estimate = sum(p.numel() for m in modules for p in m.parameters()) * dtype.itemsize
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before, anon_before = status_bytes("VmRSS"), status_bytes("RssAnon")
    anon = AnonPeak()
    start = time.perf_counter()
    state = whole_file(path) if mode == "whole" else None
    loaded = apply_file(path, "stablesr-000117", *modules, state)
    finish(components)
    del state
    modules = (*modules, loaded.adapter)
    with torch.inference_mode():  # read every tensor once, as the first forward pass (or a .to(cuda)) would
        for tensor in (t for m in modules for t in [*m.parameters(), *m.buffers()]):
            tensor.sum()
    seconds = time.perf_counter() - start
    anon.stop()
    model = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
    estimate += sum(p.numel() for p in loaded.adapter.parameters()) * dtype.itemsize
    return {
        "mode": mode,
        "dtype": dtype_name,
        "load_s": round(seconds, 1),
        "peak_rss_gb": round((status_bytes("VmHWM") - before) / GB, 2),
        "peak_anon_gb": round((anon.peak - anon_before) / GB, 2),
        "anon_gb": round(status_bytes("RssAnon") / GB, 2),
        "file_gb": round(status_bytes("RssFile") / GB, 2),
        "model_gb": round(model / GB, 2),
        "estimate_gb": round(estimate / GB, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="fp16,fp32", help="run dtypes to load into (comma-separated)")
    parser.add_argument("--modes", default="streamed,whole")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), args.worker[1], args.worker[2])))
        return
    report: dict[str, Any] = {"load_average": round(os.getloadavg()[0], 2), "runs": []}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stablesr_full_fp16.ckpt"
        report["file_gb"] = round(write_file(path) / GB, 2)
        for dtype in args.dtypes.split(","):
            for mode in args.modes.split(","):
                command = [sys.executable, __file__, "--worker", str(path), mode, dtype]
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                row = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
                report["runs"].append(row or {"mode": mode, "dtype": dtype, "error": done.stderr[-300:]})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
