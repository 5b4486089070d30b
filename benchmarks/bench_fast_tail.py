"""The fast path's tail after inference: quality report + PNG write of a 1024x1024 output, before and after
the overlap (issue 25), each in a fresh process (so the scipy import the quality report triggers counts).

before: the report measured first, then the PNG written with the finished provenance; after: studio's
path (the report measured in a background thread while the PNG is compressed, the provenance spliced
in). Interleaved, median wall, CPU and system CPU seconds, the load average before each run; plus each
part's CPU seconds alone in `before` (single-threaded work, nearly load-independent): on idle cores the
overlap takes the shorter of the two off the critical path.

    python benchmarks/bench_fast_tail.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TAIL = """
import resource, sys, tempfile, time
from pathlib import Path
wall, cpu = time.perf_counter(), time.process_time()
import numpy as np
from skimage import data
from studio.io import Picture, write_image
from studio.native import in_background
from studio.ops.resize import resize
from studio.runner import recipe
source = data.astronaut()[128:384, 128:384].astype(np.float32) / 255.0
rng = np.random.default_rng(0)
result = np.clip(resize(source, 1024, 1024, "lanczos") + rng.normal(0, 0.02, (1024, 1024, 3)), 0, 1).astype(np.float32)
picture = Picture(rgb=result)
wall, cpu = time.perf_counter(), time.process_time()  # the tail only: what follows the engine's result
system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
parts = {}
with tempfile.TemporaryDirectory() as folder:
    target = Path(folder) / "out.png"
    if sys.argv[1] == "before":
        quality = recipe.quality_report(source, result)
        parts["quality_cpu"] = time.process_time() - cpu
        mark = time.process_time()
        write_image(target, picture, "png", 95, {"studio_version": "0", "quality": quality})
        parts["write_cpu"] = time.process_time() - mark
    else:
        measuring = in_background(recipe.quality_report, source, result)
        write_image(target, picture, "png", 95, lambda: {"studio_version": "0", "quality": measuring.result()})
system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - system
print(time.perf_counter() - wall, time.process_time() - cpu, parts.get("quality_cpu", 0), parts.get("write_cpu", 0),
      system)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs: dict[str, list[list[float]]] = {"before": [], "after": []}
    loads: list[float] = []
    for index in range(args.runs + 1):  # the first pair warms the page cache and is dropped
        for variant in ("before", "after") if index % 2 else ("after", "before"):
            loads.append(os.getloadavg()[0])
            done = subprocess.run([sys.executable, "-c", TAIL, variant], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(done.stderr[-600:])
            if index:
                runs[variant].append([float(v) for v in done.stdout.split()])
    summary = {
        variant: {
            "median_wall_s": round(statistics.median(r[0] for r in values), 3),
            "median_cpu_s": round(statistics.median(r[1] for r in values), 3),
            "median_system_cpu_s": round(statistics.median(r[4] for r in values), 3),
            "wall_s": [round(r[0], 3) for r in values],
        }
        for variant, values in runs.items()
    }
    summary["before"]["quality_cpu_s"] = round(statistics.median(r[2] for r in runs["before"]), 3)
    summary["before"]["png_write_cpu_s"] = round(statistics.median(r[3] for r in runs["before"]), 3)
    print(json.dumps({"output": "1024x1024", "runs": args.runs, "load_before_runs": loads, **summary}, indent=2))


if __name__ == "__main__":
    main()
