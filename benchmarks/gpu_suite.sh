#!/usr/bin/env bash
# One CUDA GPU, one script, under 8 minutes: the CUDA tests and every GPU figure the README lacks, in one JSON.
#
#   OUT=/some/folder bash benchmarks/gpu_suite.sh        # writes $OUT/gpu_suite.json (default OUT: ./gpu_suite)
#
# 1. the tests with a CUDA path (pytest -k "cuda or gpu"), summary line and exit code;
# 2. benchmarks/gpu_figures.py: fast (Real-ESRGAN fp16), sd-x4, stablesr (full official file alone) and supir
#    (SDXL + SUPIR-v0Q layout) from 512 to 2048 px on real-size random-weight models: seconds and peak
#    torch.cuda.max_memory_allocated, each engine in its own process;
# 3. benchmarks/bench_onestep.py --device cuda (when the onestep engine's benchmark is in this checkout).
# Without a CUDA GPU it stops at once with one line (exit 3). Each part has its own time limit, so a part that
# hangs is recorded as timed out and the rest still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_suite}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)

if ! command -v nvidia-smi >/dev/null 2>&1 || ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_suite: no CUDA GPU here (nvidia-smi or torch.cuda unavailable); nothing was run" >&2
  exit 3
fi

# 1. CUDA tests (90 s)
tests_log="$OUT/cuda_tests.log"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests >"$tests_log" 2>&1
tests_rc=$?
echo "gpu_suite: CUDA tests exit $tests_rc: $(tail -n 1 "$tests_log")"

# 2. engine figures, 512 -> 2048 (fast 40 s, sd-x4 70, stablesr 80, supir 110: gpu_figures.LIMITS_S)
timeout 310 "$PY" benchmarks/gpu_figures.py --device cuda --json "$OUT/engines.json" >"$OUT/engines.log" 2>&1
figures_rc=$?
echo "gpu_suite: engine figures exit $figures_rc"

# 3. onestep (70 s), when its benchmark exists in this checkout
if [ -f benchmarks/bench_onestep.py ]; then
  timeout 70 "$PY" benchmarks/bench_onestep.py --device cuda --sizes 512 --dtypes bf16 --no-stablesr \
    --json "$OUT/onestep.json" >"$OUT/onestep.log" 2>&1
  onestep_rc=$?
else
  onestep_rc="skipped: benchmarks/bench_onestep.py is not in this checkout"
fi
echo "gpu_suite: onestep: $onestep_rc"

"$PY" - "$OUT" "$tests_rc" "$figures_rc" "$onestep_rc" "$started" <<'EOF'
import json, sys, time
from pathlib import Path

out, tests_rc, figures_rc, onestep_rc, started = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def read(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None

def last_line(name):
    path = out / name
    lines = path.read_text().strip().splitlines() if path.is_file() else []
    return lines[-1] if lines else ""

report = {
    "cuda_tests": {"exit": int(tests_rc), "summary": last_line("cuda_tests.log")},
    "engines": read("engines.json") or {"exit": int(figures_rc), "last_line": last_line("engines.log")},
    "onestep": read("onestep.json") or {"exit": onestep_rc, "last_line": last_line("onestep.log")},
    "total_s": round(time.time() - started, 1),
}
(out / "gpu_suite.json").write_text(json.dumps(report, indent=2))
print(f"gpu_suite: {out / 'gpu_suite.json'} ({report['total_s']} s)")
EOF
