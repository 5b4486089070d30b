"""Ctrl-C and SIGTERM sent to a real `studio restore` process: the report is always written, temporary files
are removed, and the exit code is 130 whichever signal stopped it.

The slow tests run the default fast engine (bundled ncnn model, one thread) on small crops of a real photo,
so each image takes a second or so and a signal lands in the middle of the network's work; the quick one runs
the classical engine on full-size photos (about a second each to resize, encode and write).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _batch(folder: Path, astronaut: np.ndarray, count: int, size: int = 96) -> Path:
    shots = folder / "shots"
    shots.mkdir()
    for index in range(count):
        crop = astronaut[index * 20 :, index * 10 :][:size, :size]
        Image.fromarray(crop).resize((size, size)).save(shots / f"img{index}.png")
    return shots


def _start(shots: Path, out: Path, *flags: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "studio", "restore", str(shots), "-o", str(out), "--threads", "1", *flags]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _interrupt(process: subprocess.Popen[str], out: Path, sig: int, after: float) -> str:
    """Send `sig` `after` seconds past the first finished output (the batch is then surely running)."""
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    process.send_signal(sig)
    return process.communicate(timeout=120)[0]


def _check_stopped_cleanly(process: subprocess.Popen[str], output: str, out: Path, count: int) -> None:
    assert process.returncode == 130, output
    assert "Traceback" not in output and "terminate called" not in output, output
    report = json.loads((out / "studio_report.json").read_text())
    statuses = [entry["status"] for entry in report["files"]]
    assert len(statuses) == count and "interrupted" in statuses, output
    assert statuses.count("ok") == len(list(out.glob("*.png")))  # what the report calls done is there
    assert not [p.name for p in out.iterdir() if ".part" in p.name]
    assert "succeeded" in output and "interrupted" in output


def test_sigterm_is_treated_like_ctrl_c(tmp_path: Path, astronaut: np.ndarray) -> None:
    shots, out = _batch(tmp_path, astronaut, 6, size=480), tmp_path / "out"
    process = _start(shots, out, "--engine", "classical")
    output = _interrupt(process, out, signal.SIGTERM, 0.2)
    _check_stopped_cleanly(process, output, out, 6)
    assert "interrupted (SIGTERM)" in output


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.15, 0.4, 0.8, 1.3])
def test_ctrl_c_at_any_moment_writes_the_report(tmp_path: Path, astronaut: np.ndarray, after: float) -> None:
    shots, out = _batch(tmp_path, astronaut, 8), tmp_path / "out"
    process = _start(shots, out)
    output = _interrupt(process, out, signal.SIGINT, after)
    _check_stopped_cleanly(process, output, out, 8)


@pytest.mark.slow
def test_signals_repeated_while_stopping_still_leave_a_report(tmp_path: Path, astronaut: np.ndarray) -> None:
    shots, out = _batch(tmp_path, astronaut, 6), tmp_path / "out"
    process = _start(shots, out)
    while not any(out.glob("*.png")) and process.poll() is None:
        time.sleep(0.05)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        process.send_signal(sig)
        time.sleep(0.01)
    output = process.communicate(timeout=120)[0]
    _check_stopped_cleanly(process, output, out, 6)
    assert os.path.getsize(out / "studio_report.json") > 0
