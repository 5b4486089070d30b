"""`studio restore --engine fast` against a bare ncnn process, whole process against whole process.

The bare side is a minimal script: import numpy, Pillow and ncnn, load the bundled model, decode the PNG,
run one whole-image extract with the same thread count, encode the PNG (Pillow's default level, as
studio's). The studio side is the real command (`--tile 0`: the same single extract, so the network does
the same work and the pixels must be identical, except inside faces: face protection, on by default, pulls
them toward the Lanczos upscale). After one warm-up of each (it converts the bundled
model once and fills the page cache), the two alternate, bare first in odd runs and studio first in
even ones, `--runs` times per input size. Per run: wall seconds from spawn to exit, CPU seconds of the
child (user + system), the 1-minute load average just before it started, and the CPU seconds that other
processes used while it ran (all CPU time in /proc/stat minus the child's). Printed JSON: medians and
ranges per side, the ratio of medians (target <= 1.05), the max pixel difference (must be 0 outside the
protected faces), the cores
each side kept busy (CPU / wall: time one core spends alone shows up here), the bare process's phases,
and the inference's GFLOP/s against a measured peak (a 2-thread fp32 matmul in torch, best of 5). At the
sizes in --worker-bare-sizes two more sides run the bare script on worker threads: load and extract on one
worker (studio's arrangement), and split between the main thread and a worker (two OpenMP teams).

A machine that is not idle gets a warning on stderr and in the JSON: such ratios are not the idle figures
(under load the serial phases hide in the queue). Idle means other processes used less than --idle-share of
the machine's CPU during every run; the load average is recorded but not judged, since on a 2-core machine
it still counts the benchmark's own previous run for a minute (it read 1.5-2 on an idle machine).
Before the runs, studio's modules are compiled to bytecode, as an installed package (or any second run)
has them: a sandbox with PYTHONDONTWRITEBYTECODE would otherwise compile them in every run (~0.12 s).

    python benchmarks/bench_fast_e2e.py                  # 256 and 512 px input, x4plus, 5 runs each
    python benchmarks/bench_fast_e2e.py --sizes 256 --runs 3
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MACS_PER_INPUT_PIXEL = 17.9e6  # Real-ESRGAN x4plus (RRDB, 23 blocks); studio.engines.fast.estimates
PEAK_BYTES_PER_INPUT_PIXEL = 55_000  # x4plus whole-image extract in ncnn: ~3.3 GB at 256x256 (measured)

BARE = """
import json, sys, threading, time
started = time.perf_counter()
import numpy as np
from PIL import Image
import ncnn

param, binary, blob_in, blob_out, source, target, threads, where = sys.argv[1:9]
phases = {"imports": time.perf_counter() - started}
box = {}


def load():
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = int(threads)
    net.opt.lightmode = True
    net.load_param(param)
    net.load_model(binary)
    box["net"] = net
    phases["load"] = time.perf_counter() - started


def decode_and_infer():
    rgb = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255.0
    planar = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat borrows it: keep it referenced
    phases["decode"] = time.perf_counter() - started
    extractor = box["net"].create_extractor()
    extractor.input(blob_in, ncnn.Mat(planar))
    box["out"] = extractor.extract(blob_out)[1]


def on_a_thread(*steps):
    worker = threading.Thread(target=lambda: [step() for step in steps])
    worker.start()
    worker.join()


if where == "worker":  # as studio runs it: load and extract on one worker thread (one OpenMP team)
    on_a_thread(load, decode_and_infer)
elif where == "split":  # studio before: loaded on the main thread, extracted on another (two OpenMP teams)
    load()
    on_a_thread(decode_and_infer)
else:
    load()
    decode_and_infer()
out = box["out"]
phases["infer"] = time.perf_counter() - started
pixels = (np.clip(np.array(out), 0, 1).transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
Image.fromarray(pixels).save(target)
phases["encode"] = time.perf_counter() - started
print(json.dumps(phases))
"""

PEAK = """
import time, torch
torch.set_num_threads(int(__import__("sys").argv[1]))
a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
a @ b
best = min(
    (lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5)
)
print(2 * 4096**3 / best / 1e9)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _timed(command: list[str]) -> dict:
    """Run a whole process: wall and CPU seconds, the load average before it, the CPU seconds other processes
    used meanwhile, its stdout."""
    from studio.engines.fast.openmp import machine_cpu_seconds

    load = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before = machine_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    machine = machine_cpu_seconds() - machine_before
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"benchmark: {' '.join(command[:4])}... failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    others = max(0.0, machine - cpu)
    return {"wall": wall, "cpu": cpu, "load": load, "others_cpu": others, "stdout": done.stdout}


def _bare_command(model: str, source: Path, target: Path, threads: int, where: str = "main") -> list[str]:
    from studio import weights
    from studio.weights.ncnn import network_blobs

    param, binary = weights.offline_files(weights.find(model))
    blob_in, blob_out = network_blobs(param)
    return [
        sys.executable,
        "-c",
        BARE,
        str(param),
        str(binary),
        blob_in,
        blob_out,
        str(source),
        str(target),
        str(threads),
        where,
    ]


def _studio_command(model: str, source: Path, target: Path, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "studio", "restore", str(source), "-o", str(target), "--engine", "fast",
        "--model", model, "--overwrite", "--tile", "0", "--threads", str(threads),
        "--report", str(target.with_suffix(".json")),
    ]  # fmt: skip


def _studio_phases(report: Path, wall: float) -> dict[str, float]:
    """From studio's own report: the job (read, load, infer, measure: up to the write), the write (PNG,
    waiting for the quality report if it is still running), and the rest (interpreter, imports, checks)."""
    job = json.loads(report.read_text())["files"][0]
    before_write = job["quality"]["seconds"]
    return {
        "outside_the_job": wall - job["seconds"],
        "job_to_write": before_write,
        "write": job["seconds"] - before_write,
    }


def _bare_phases(stamps: dict[str, float], wall: float) -> dict[str, float]:
    """Durations from the bare script's timestamps; the rest of the wall time is interpreter start and exit."""
    names = ["imports", "load", "decode", "infer", "encode"]
    durations = {name: stamps[name] - (stamps[names[i - 1]] if i else 0.0) for i, name in enumerate(names)}
    return {"interpreter_start_and_exit": wall - stamps["encode"], **durations}


def _pixel_check(bare: np.ndarray, ours: np.ndarray, report: Path, source_shape: tuple[int, int]) -> dict:
    """Max difference against the bare output, over the whole picture and outside the faces studio protected.

    Face protection (on by default) pulls each face found toward the Lanczos upscale and leaves every other
    pixel exactly as the network made it, so outside the faces' feathered ellipses (rebuilt from the reported
    landmarks, widened by 4 px for their rounding) the difference must be 0.
    """
    import cv2

    from studio.engines.faces.protect import face_mask

    difference = np.abs(bare - ours).max(axis=-1)
    faces = [face for face in json.loads(report.read_text())["files"][0]["faces"] if face.get("protected")]
    landmarks = [np.asarray(face["landmarks"], np.float64) for face in faces]
    touched = face_mask(landmarks, source_shape, difference.shape) > 0
    touched = cv2.dilate(touched.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return {
        "max_pixel_difference": int(difference.max()),
        "protected_faces": len(faces),
        "max_pixel_difference_outside_protected_faces": int(difference[~touched].max(initial=0)),
    }


def _summary(runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    return {
        "median_s": round(statistics.median(walls), 2),
        "range_s": [round(min(walls), 2), round(max(walls), 2)],
        "median_cpu_s": round(statistics.median(r["cpu"] for r in runs), 2),
        "cores_busy": round(statistics.median(r["cpu"] / r["wall"] for r in runs), 2),
        "runs": [
            {
                "wall_s": round(r["wall"], 2),
                "cpu_s": round(r["cpu"], 2),
                "load_before": r["load"],
                "others_cpu_s": round(r["others_cpu"], 2),
            }
            for r in runs
        ],
    }


def _measure_size(args: argparse.Namespace, size: int, tmp: Path, threads: int) -> dict:
    from PIL import Image
    from skimage import data

    source = tmp / f"input{size}.png"
    photo = data.astronaut()  # 512x512
    crop = photo if size >= 512 else photo[128 : 128 + size, 128 : 128 + size]
    Image.fromarray(crop).save(source)
    bare_out, studio_out = tmp / f"bare{size}.png", tmp / f"studio{size}.png"
    bare = _bare_command(args.model, source, bare_out, threads)
    ours = _studio_command(args.model, source, studio_out, threads)
    sides = [("bare_ncnn", bare), ("studio", ours)]
    if size in args.worker_bare_sizes:
        for where in ("worker", "split"):
            name = "bare_ncnn_worker_thread" if where == "worker" else "bare_ncnn_split_threads"
            sides.append((name, _bare_command(args.model, source, tmp / f"{where}.png", threads, where)))
    runs: dict[str, list[dict]] = {name: [] for name, _ in sides}
    for index in range(args.runs):
        for name, command in sides[index % len(sides) :] + sides[: index % len(sides)]:  # who goes first rotates
            runs[name].append(_timed(command))
            if name == "studio":
                runs[name][-1]["phases"] = _studio_phases(studio_out.with_suffix(".json"), runs[name][-1]["wall"])
            print(f"{size}px run {index + 1}: {name} {runs[name][-1]['wall']:.2f} s", file=sys.stderr)
    phases = [_bare_phases(json.loads(r["stdout"].strip().splitlines()[-1]), r["wall"]) for r in runs["bare_ncnn"]]
    ours_phases = [r["phases"] for r in runs["studio"]]
    infer = statistics.median(p["infer"] for p in phases)
    first = np.asarray(Image.open(bare_out), dtype=np.int16)
    second = np.asarray(Image.open(studio_out), dtype=np.int16)
    result = {name: _summary(values) for name, values in runs.items()}
    return {
        "input": f"{size}x{size}",
        **result,
        "ratio_studio_vs_bare": round(result["studio"]["median_s"] / result["bare_ncnn"]["median_s"], 3),
        **{
            f"ratio_{name.removeprefix('bare_ncnn_')}_vs_bare": round(
                result[name]["median_s"] / result["bare_ncnn"]["median_s"], 3
            )
            for name in ("bare_ncnn_worker_thread", "bare_ncnn_split_threads")
            if name in result
        },
        **_pixel_check(first, second, studio_out.with_suffix(".json"), (size, size)),
        "bare_phases_median_s": {key: round(statistics.median(p[key] for p in phases), 2) for key in phases[0]},
        "studio_phases_median_s": {
            key: round(statistics.median(p[key] for p in ours_phases), 2) for key in ours_phases[0]
        },
        "inference_s": round(infer, 2),
        "inference_gflops": round(MACS_PER_INPUT_PIXEL * 2 * size * size / infer / 1e9, 1),
    }


def _peak_gflops(threads: int) -> float | None:
    done = subprocess.run([sys.executable, "-c", PEAK, str(threads)], capture_output=True, text=True)
    return round(float(done.stdout.strip()), 1) if done.returncode == 0 else None


def _memory_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="input sides in px (<= 512)")
    parser.add_argument("--runs", type=int, default=5, help="runs per side and size after the warm-up")
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument(
        "--worker-bare-sizes",
        type=int,
        nargs="*",
        default=[256],
        help="sizes that also time the bare script on worker threads: load and extract on one worker, as studio "
        "runs them, and split (loaded on the main thread, extracted on another: two OpenMP teams, more threads "
        "than cores, so libgomp sleeps at barriers instead of spinning; studio's arrangement before)",
    )
    parser.add_argument(
        "--idle-share",
        type=float,
        default=0.03,
        help="share of the machine's CPU (wall x cores) other processes may use during a run before a warning",
    )
    args = parser.parse_args()
    from studio.devices import physical_cores

    threads = physical_cores()
    report: dict = {"model": args.model, "threads": threads, "runs": args.runs, "sizes": []}
    compileall.compile_dir(ROOT / "studio", quiet=1)  # bytecode, as installed (numpy, Pillow, ncnn have theirs)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        warm = _measure_size(argparse.Namespace(**{**vars(args), "runs": 1}), 64, tmp, threads)
        report["warm_up"] = {name: warm[name]["median_s"] for name in ("bare_ncnn", "studio")}
        for size in args.sizes:
            needed = PEAK_BYTES_PER_INPUT_PIXEL * size * size
            if _memory_available() < needed * 1.1:
                report["sizes"].append({"input": f"{size}x{size}", "skipped": f"needs ~{needed / 2**30:.0f} GB free"})
                continue
            report["sizes"].append(_measure_size(args, size, tmp, threads))
    peak = _peak_gflops(threads)
    report["peak_gflops"] = peak
    report["peak_method"] = f"fp32 4096x4096 matmul in torch, {threads} threads, best of 5"
    cores = os.cpu_count() or 1
    busiest = max(
        (
            run["others_cpu_s"] / (run["wall_s"] * cores)
            for entry in report["sizes"]
            for side in entry.values()
            if isinstance(side, dict) and "runs" in side
            for run in side["runs"]
        ),
        default=0.0,
    )
    for entry in report["sizes"]:
        if peak and "inference_gflops" in entry:
            entry["inference_share_of_peak"] = round(entry["inference_gflops"] / peak, 3)
    report["others_cpu_share_max"] = round(busiest, 4)
    if busiest > args.idle_share:
        report["warning"] = (
            f"machine not idle: other processes used up to {busiest:.0%} of the CPU during a run (threshold "
            f"{args.idle_share:.0%}); these are not idle figures"
        )
        print(f"WARNING: {report['warning']}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
