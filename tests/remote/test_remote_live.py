"""`studio restore --remote` against a real `studio serve` process on 127.0.0.1 (slow: it loads the fast
engine): the fast engine's pixels equal a local run's, a server killed mid-batch fails its files in one line
and the report is still written, and Ctrl-C cancels the jobs the client started on the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from support.serving import TOKEN, free_port
from typer.testing import CliRunner

from studio.cli import app

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _environment(root: Path, weights: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(root / "xdg"),
        "XDG_STATE_HOME": str(root / "state"),
        "STUDIO_CONFIG": str(root / "xdg" / "config.toml"),
        "STUDIO_WEIGHTS_DIR": str(weights),
        "HF_HUB_OFFLINE": "1",
    }


def _start_server(root: Path, weights: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "studio", "serve", "--port", str(port), "--data-dir", str(root / "data")]
    process = subprocess.Popen(
        [*command, "--token", TOKEN],
        env=_environment(root, weights),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("studio serve did not start")


@pytest.fixture
def server(tmp_path: Path, shared_weights_dir: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    process, url = _start_server(tmp_path / "server", shared_weights_dir)
    yield process, url
    process.kill()
    process.wait(20)


def _scans(folder: Path, astronaut: np.ndarray, count: int, size: tuple[int, int]) -> Path:
    folder.mkdir()
    for index in range(count):
        crop = astronaut[40 * index : 40 * index + 200, 30 * index : 30 * index + 240]
        Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS).save(folder / f"scan{index}.png")
    return folder


def _client(args: list[str], root: Path, weights: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "studio", "restore", *args],
        env=_environment(root, weights),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _jobs(url: str) -> list[dict]:
    return httpx.get(f"{url}/api/v1/jobs", headers=HEADERS, timeout=60).json()


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.1)


def test_fast_engine_pixels_are_the_local_ones(server, photo: Path, tmp_path: Path) -> None:
    _, url = server
    local, remote = tmp_path / "local.png", tmp_path / "remote.png"
    runner = CliRunner()
    assert runner.invoke(app, ["restore", str(photo), "-o", str(local), "--engine", "fast"]).exit_code == 0
    result = runner.invoke(
        app, ["restore", str(photo), "-o", str(remote), "--engine", "fast", "--remote", url, "--remote-token", TOKEN]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(remote)), np.asarray(Image.open(local)))


def test_a_server_killed_mid_batch_fails_its_files_in_one_line_and_the_report_is_written(
    server, astronaut: np.ndarray, tmp_path: Path, shared_weights_dir: Path
) -> None:
    process, url = server
    scans, out = _scans(tmp_path / "scans", astronaut, 6, (96, 72)), tmp_path / "out"
    args = [str(scans), "-o", str(out), "--engine", "fast", "--remote", url, "--remote-token", TOKEN]
    client = _client(args, tmp_path / "client", shared_weights_dir)
    _wait_for(lambda: out.is_dir() and any(out.glob("*.png")), 240)  # one result is home
    process.kill()
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 1, stderr
    gone = [line for line in stderr.splitlines() if "stopped answering" in line]
    assert len(gone) == 1 and "marked failed" in gone[0] and "--skip-existing" in gone[0]
    report = json.loads((out / "studio_report.json").read_text())
    statuses = [entry["status"] for entry in report["files"]]
    assert "ok" in statuses and "failed" in statuses and set(statuses) <= {"ok", "failed"}
    for entry in report["files"]:
        assert Path(entry["output"]).exists() == (entry["status"] == "ok")


def test_ctrl_c_cancels_the_jobs_it_started_on_the_server(
    server, astronaut: np.ndarray, tmp_path: Path, shared_weights_dir: Path
) -> None:
    _, url = server
    scans, out = _scans(tmp_path / "scans", astronaut, 3, (160, 120)), tmp_path / "out"
    args = [str(scans), "-o", str(out), "--engine", "fast", "--remote", url, "--remote-token", TOKEN]
    client = _client(args, tmp_path / "client", shared_weights_dir)
    _wait_for(lambda: any(job["status"] == "running" for job in _jobs(url)), 180)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 130, stderr
    _wait_for(
        lambda: all(job["status"] in ("done", "cancelled") for job in _jobs(url)), 240
    )  # a tile in flight ends first
    assert any(job["status"] == "cancelled" for job in _jobs(url))
    report = json.loads((out / "studio_report.json").read_text())
    assert "interrupted" in [entry["status"] for entry in report["files"]]
