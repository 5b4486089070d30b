"""`studio serve` under a burst of concurrent uploads, side by side with the same jobs run as one CLI batch.

Both sides are warmed first (one job each, so models are loaded). The server gets all uploads at once
from as many client threads, with one CPU worker, so the ratio server/batch is the service's overhead
(HTTP, upload checks, SQLite, polling) per job. Also reported: the time to answer an upload (202) and
the server's peak and final resident memory, and the mean time a job spends running in the server
(started to finished) beside the batch's seconds per job. Prints one JSON document.

    python benchmarks/bench_serve.py                          # 50 classical + 10 fast jobs, ~1 minute
    python benchmarks/bench_serve.py --jobs 100 --fast-jobs 0 --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _photos(folder: Path, count: int, size: int) -> list[Path]:
    from PIL import Image
    from skimage import data

    image = data.astronaut()
    paths = []
    for index in range(count):
        top, left = (37 * index) % 300, (53 * index) % 260
        path = folder / f"photo{index:03d}.png"
        Image.fromarray(image[top : top + 200, left : left + 240]).resize((size, size * 3 // 4)).save(path)
        paths.append(path)
    return paths


def _batch_seconds(paths: list[Path], out: Path, engine: str) -> float:
    """The same jobs as one in-process batch (what `studio restore a b c -o out/` runs)."""
    import studio

    studio.restore(paths[:1], out / "warm/", engine=engine, scale=2, seed=7)
    started = time.perf_counter()
    report = studio.restore(paths, out / f"{engine}/", engine=engine, scale=2, seed=7)
    seconds = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"batch failed: {report.to_json()}")
    return seconds


def _start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--workers",
            "1",
            "--queue-limit",
            "10000",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def _served(client, paths: list[Path], engine: str) -> dict[str, float]:
    """Submit every path at once; seconds until the last result is done, and per-upload answer times."""
    settings = json.dumps({"engine": engine, "scale": 2, "seed": 7})

    def upload(path: Path) -> tuple[str, float]:
        started = time.perf_counter()
        response = client.post(
            "/api/v1/jobs", files={"file": (path.name, path.read_bytes(), "image/png")}, data={"settings": settings}
        )
        response.raise_for_status()
        return response.json()["id"], time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(len(paths)) as pool:
        submitted = list(pool.map(upload, paths))
    pending = {job_id for job_id, _ in submitted}
    run_seconds = []
    while pending:  # each client polls its own job 4 times a second, as the page does twice a second
        for job_id in list(pending):
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("failed", "cancelled"):
                raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
            if job["status"] == "done":
                pending.discard(job_id)
                run_seconds.append(job["finished"] - job["started"])
        time.sleep(0.25)
    latencies = np.array([seconds for _, seconds in submitted]) * 1000
    return {
        "seconds": time.perf_counter() - started,
        "upload_ms_p50": float(np.percentile(latencies, 50)),
        "upload_ms_p95": float(np.percentile(latencies, 95)),
        "job_run_s": float(np.mean(run_seconds)),
    }


def _memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return {"server_peak_rss_mb": round(values["VmHWM"]), "server_rss_after_mb": round(values["VmRSS"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="classical jobs")
    parser.add_argument("--fast-jobs", type=int, default=10, help="fast-engine jobs")
    parser.add_argument("--size", type=int, default=64, help="input width in pixels (height 3/4 of it)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = _photos(folder, max(args.jobs, args.fast_jobs), args.size)
        runs = [(engine, count) for engine, count in (("classical", args.jobs), ("fast", args.fast_jobs)) if count]
        batch = {engine: _batch_seconds(photos[:count], folder / "cli", engine) for engine, count in runs}
        process, base = _start_server(folder / "data")
        try:
            with httpx.Client(base_url=base, timeout=120, limits=httpx.Limits(max_connections=200)) as client:
                for _ in range(300):
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                for engine, count in runs:
                    _served(client, photos[:1], engine)  # warm: the worker loads its engine once
                    served = _served(client, photos[:count], engine)
                    results.append(
                        {
                            "engine": engine,
                            "jobs": count,
                            "input": f"{args.size}x{args.size * 3 // 4}",
                            "scale": 2,
                            "cli_batch_s": round(batch[engine], 3),
                            "server_s": round(served["seconds"], 3),
                            "server_over_batch": round(served["seconds"] / batch[engine], 2),
                            "cli_s_per_job": round(batch[engine] / count, 3),
                            "server_run_s_per_job": round(served["job_run_s"], 3),
                            "upload_ms_p50": round(served["upload_ms_p50"], 1),
                            "upload_ms_p95": round(served["upload_ms_p95"], 1),
                        }
                    )
            memory = _memory_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    print(json.dumps({"runs": results, **memory, "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
