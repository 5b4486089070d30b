"""benchmarks/gpu_suite.sh and its Python part: no GPU here, so the suite must stop at once in one line, and
its engine figures must run end to end at toy width on the CPU (their numbers mean nothing at that size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO


def test_suite_without_cuda_stops_at_once_in_one_line(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the suite would really run")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_suite.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "gpu_suite: no CUDA GPU here (nvidia-smi or torch.cuda unavailable); nothing was run"
    ]
    assert not (tmp_path / "out" / "gpu_suite.json").exists()


@pytest.mark.slow
def test_engine_figures_run_end_to_end_at_toy_width_on_the_cpu(tmp_path: Path) -> None:
    """Every engine the suite measures: built, checked, loaded and run 32 -> 128 px through its own restore."""
    report = tmp_path / "engines.json"
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_figures.py"), "--device", "cpu", "--toy"]
    done = subprocess.run([*command, "--json", str(report)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(report.read_text())["engines"]
    assert [row["engine"] for row in rows] == ["fast", "sd-x4", "stablesr", "supir"]
    for row in rows:
        assert "error" not in row, row
        assert row["output"] == [128, 128] and row["restore_s"] > 0
