"""How long `studio restore` takes to stop after Ctrl-C, and whether the batch report is written.

Starts a two-image batch on the fast engine (CPU), sends SIGINT at several moments (model loading,
mid-inference), and measures the seconds from the signal to the process's exit. Prints JSON.

    python benchmarks/bench_interrupt.py                       # ~1 minute on 2 CPU cores
    python benchmarks/bench_interrupt.py --size 400 --delays 3 6 9
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _batch(folder: Path, size: int) -> None:
    from PIL import Image
    from skimage import data

    image = data.astronaut()
    for index in range(2):
        Image.fromarray(image[index * 100 : index * 100 + size, :size]).save(folder / f"{index}.png")


def _interrupt_after(delay: float, folder: Path, out: Path, engine: str) -> dict:
    command = [sys.executable, "-m", "studio", "restore", str(folder), "-o", f"{out}/", "--engine", engine]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a fresh session, with SIGINT at its default (a shell's background job would inherit SIG_IGN)
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay)
    sent = time.perf_counter()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate()
    stopped = time.perf_counter() - sent
    report = out / "studio_report.json"
    statuses = [f["status"] for f in json.loads(report.read_text())["files"]] if report.exists() else None
    return {
        "signal_after_s": delay,
        "stop_s": round(stopped, 2),
        "exit_code": process.returncode,
        "report_statuses": statuses,
        "last_line": output.strip().splitlines()[-1] if output.strip() else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="side of each input image in pixels")
    parser.add_argument("--delays", type=float, nargs="+", default=[2.0, 5.0, 8.0])
    parser.add_argument("--engine", default="fast")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "batch"
        folder.mkdir()
        _batch(folder, args.size)
        for index, delay in enumerate(args.delays):
            results.append(_interrupt_after(delay, folder, Path(tmp) / f"out{index}", args.engine))
    print(json.dumps({"size": args.size, "engine": args.engine, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
