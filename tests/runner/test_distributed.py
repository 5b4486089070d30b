"""Spreading a batch over processes: the split, the merged report, and a real two-process run on CPU,
interrupted and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from support import REPO

from studio.runner.distributed import Share, current_share, merge_reports


def test_share_is_a_deterministic_round_robin() -> None:
    jobs = list(range(7))
    shares = [Share(index, 3).select(jobs) for index in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == jobs
    assert Share().select(jobs) == jobs


def test_plain_run_owns_every_job(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert current_share() == Share(0, 1)


def test_merge_keeps_batch_order_and_each_file_once() -> None:
    part = {"studio_version": "x", "settings": {"engine": "classical"}, "setting_sources": {}}
    parts = [
        {**part, "process": 0, "files": [{"input": "a", "status": "ok"}, {"input": "c", "status": "failed"}]},
        {**part, "process": 1, "files": [{"input": "b", "status": "skipped"}, {"input": "a", "status": "ok"}]},
    ]
    merged = merge_reports(parts, ["a", "b", "c"])
    assert [(f["input"], f["process"]) for f in merged["files"]] == [("a", 0), ("b", 1), ("c", 0)]
    assert merged["summary"] == {"total": 3, "succeeded": 1, "failed": 1, "skipped": 1, "processes": 2}
    assert merged["settings"] == {"engine": "classical"} and "process" not in merged


def _launch(args: list[str], **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "studio",
        "restore",
        *args,
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def test_two_cpu_processes_split_merge_and_resume_after_an_interruption(tmp_path: Path, astronaut: np.ndarray) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on CPU (torch's launcher, gloo): the classical
    engine keeps it fast."""
    inputs, out = tmp_path / "scans", tmp_path / "out"
    inputs.mkdir()
    for i in range(10):
        Image.fromarray(astronaut[i * 40 : i * 40 + 96, 100:196]).save(inputs / f"scan{i:02d}.png")
    (inputs / "scan05b.png").write_bytes(b"not a png")  # corrupt: fails alone
    args = [str(inputs), "-o", str(out), "--engine", "classical", "--scale", "4", "--skip-existing"]

    first = _launch(args, start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(out.glob("scan*.png")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C on the launcher and both workers
    first.communicate(timeout=120)
    assert not list(out.glob(".*part*")), "an interrupted process left a partial file"
    done_before = {path.name for path in out.glob("scan*.png")}
    assert done_before  # the interrupted run kept what it finished

    second = _launch(args)
    output, _ = second.communicate(timeout=300)
    assert second.returncode != 0, output  # the corrupt file is reported as a failure
    report = json.loads((out / "studio_report.json").read_text())
    files = report["files"]
    names = [Path(entry["input"]).name for entry in files]
    assert names == sorted(path.name for path in inputs.iterdir())  # every file once, in batch order
    assert report["summary"]["processes"] == 2 and report["summary"]["total"] == 11
    for position, entry in enumerate(files):
        assert entry["process"] == position % 2  # the round-robin split
        name = Path(entry["input"]).name
        if name == "scan05b.png":
            assert entry["status"] == "failed" and "not an image" in entry["error"]
        elif name in done_before:
            assert entry["status"] == "skipped"
        else:
            assert entry["status"] == "ok"
    assert len(list(out.glob("scan*.png"))) == 10
    assert Image.open(out / "scan00.png").size == (384, 384)
