"""`studio restore --remote` over loopback beside the same batch run here: what the remote path costs per job.

A `studio serve` process on 127.0.0.1 (one CPU worker, plus the diffusion worker it starts on a machine without
a GPU) and this process restore the same files with the same settings and seed; both sides are warmed first
(one job each, so models are loaded), and rounds alternate local and remote (the best of each counts). Since the
server runs on the same cores, the ratio measures the remote path's overhead (upload, checks, polling, download,
the local write), not a faster machine. Also checks that the pixels are identical. Prints one JSON document.

    python benchmarks/bench_remote.py                       # 20 classical + 5 fast jobs, 64x48 -> 2x, best of 2
    python benchmarks/bench_remote.py --jobs 50 --fast-jobs 0 --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serve import _photos, _start_server


def _local(paths: list[Path], out: Path, engine: str) -> float:
    from studio.runner import plan_run, run_batch

    run_batch(plan_run({"engine": engine, "scale": 2.0, "seed": 7}, paths[:1], out / "warm/", output_is_folder=True))
    started = time.perf_counter()
    report = run_batch(
        plan_run({"engine": engine, "scale": 2.0, "seed": 7}, paths, out / "local/", output_is_folder=True)
    )
    if report.failed:
        raise SystemExit(f"local batch failed: {report.to_json()}")
    return time.perf_counter() - started


def _remote(paths: list[Path], out: Path, engine: str, url: str) -> float:
    from studio.remote import plan_remote, remote_target, run_remote_batch

    cli = {"engine": engine, "scale": 2.0, "seed": 7, "remote": url}

    def run(files: list[Path], folder: Path) -> float:
        started = time.perf_counter()  # the up-front checks (two requests) are part of every remote run
        plan = plan_remote(remote_target(cli, None), cli, files, folder, output_is_folder=True)
        report = run_remote_batch(plan)
        if report.failed:
            raise SystemExit(f"remote batch failed: {report.to_json()}")
        return time.perf_counter() - started

    run(paths[:1], out / "warm-remote/")
    return run(paths, out / "remote/")


def _identical(out: Path) -> bool:
    from PIL import Image

    local = sorted((out / "local").glob("*.png"))
    return bool(local) and all(
        np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(out / "remote" / path.name)))
        for path in local
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="classical jobs")
    parser.add_argument("--fast-jobs", type=int, default=5, help="fast-engine jobs")
    parser.add_argument("--size", type=int, default=64, help="input width in pixels (height 3/4 of it)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved local/remote rounds; the best counts")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(folder / "state")  # the first-upload line's memory: not the user's
        photos = _photos(folder, max(args.jobs, args.fast_jobs), args.size)
        process, url = _start_server(folder / "data")
        try:
            for _ in range(600):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for engine, count in (("classical", args.jobs), ("fast", args.fast_jobs)):
                if not count:
                    continue
                local, remote = float("inf"), float("inf")
                for round_ in range(args.repeats):  # interleaved, so load from elsewhere hits both sides
                    out = folder / f"{engine}{round_}"
                    local = min(local, _local(photos[:count], out, engine))
                    remote = min(remote, _remote(photos[:count], out, engine, url))
                results.append(
                    {
                        "engine": engine,
                        "jobs": count,
                        "input": f"{args.size}x{args.size * 3 // 4}",
                        "scale": 2,
                        "local_s": round(local, 3),
                        "remote_s": round(remote, 3),
                        "remote_over_local": round(remote / local, 2),
                        "remote_extra_s_per_job": round((remote - local) / count, 3),
                        "pixels_identical": _identical(out),
                    }
                )
        finally:
            process.terminate()
            process.wait(30)
    print(json.dumps({"runs": results, "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
