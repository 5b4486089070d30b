"""`studio restore` end to end (process start included) against bare ncnn inference of the same model.

Side by side in one run, interleaved (bare, studio, studio again right after: "after a previous run",
when the load average still counts the previous run), each configuration in a fresh process, the best
of --repeats kept (the machine may be shared: best-of is the least noisy figure). Prints JSON with the
ratio studio / bare (target: <= 1.1 at 256x256) and whether the pixels are identical.

    python benchmarks/bench_fast_e2e.py                        # 256x256 -> 1024x1024, x4plus, 2 repeats
    python benchmarks/bench_fast_e2e.py --size 128 --repeats 3
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

BARE = """
import sys, time
import numpy as np
from PIL import Image
import ncnn
from studio import weights
from studio.devices import physical_cores
from studio.weights.ncnn import network_blobs

param, binary = weights.offline_files(weights.find(sys.argv[1]))
net = ncnn.Net()
net.opt.use_vulkan_compute = False
net.opt.num_threads = physical_cores()
net.opt.lightmode = True
net.load_param(str(param)); net.load_model(str(binary))
blob_in, blob_out = network_blobs(param)
rgb = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32) / 255.0
planar = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat borrows it: keep it referenced
started = time.perf_counter()
extractor = net.create_extractor()
extractor.input(blob_in, ncnn.Mat(planar))
_, out = extractor.extract(blob_out)
seconds = time.perf_counter() - started
pixels = (np.clip(np.array(out), 0, 1).transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
Image.fromarray(pixels).save(sys.argv[3])
print(seconds)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _bare(model: str, source: Path, target: Path) -> float:
    """Seconds of the ncnn inference alone (model loaded, input decoded: not counted)."""
    done = subprocess.run(
        [sys.executable, "-c", BARE, model, str(source), str(target)],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _studio(model: str, source: Path, target: Path) -> float:
    """Wall seconds of the whole command, from process start to exit."""
    command = [
        sys.executable,
        "-m",
        "studio",
        "restore",
        str(source),
        "-o",
        str(target),
        "--engine",
        "fast",
        "--model",
        model,
        "--overwrite",
        "--tile",
        "0",
    ]
    started = time.perf_counter()
    subprocess.run(command, env=_env(), capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="realesrgan-x4plus")
    args = parser.parse_args()
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "input.png"
        Image.fromarray(data.astronaut()[128 : 128 + args.size, 128 : 128 + args.size]).save(source)
        _studio(args.model, source, Path(tmp) / "warm.png")  # converts the bundled model once, warms caches
        times: dict[str, list[float]] = {"bare_ncnn": [], "studio": [], "studio_after_a_run": []}
        for _ in range(args.repeats):
            times["bare_ncnn"].append(_bare(args.model, source, Path(tmp) / "bare.png"))
            times["studio"].append(_studio(args.model, source, Path(tmp) / "studio.png"))
            times["studio_after_a_run"].append(_studio(args.model, source, Path(tmp) / "studio.png"))
        bare = np.asarray(Image.open(Path(tmp) / "bare.png"), dtype=np.int16)
        ours = np.asarray(Image.open(Path(tmp) / "studio.png"), dtype=np.int16)
    best = {name: min(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "size": args.size,
                "model": args.model,
                "repeats": args.repeats,
                "load_average_at_end": os.getloadavg()[0],
                "seconds": {name: [round(v, 2) for v in values] for name, values in times.items()},
                "best_seconds": {name: round(v, 2) for name, v in best.items()},
                "ratio_studio_end_to_end_vs_bare_inference": round(best["studio"] / best["bare_ncnn"], 3),
                "ratio_after_a_previous_run": round(best["studio_after_a_run"] / best["bare_ncnn"], 3),
                "max_pixel_difference": int(np.abs(bare - ours).max()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
