"""Ctrl-C keeps a resumable state; the same command continues and gives the file an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO
from support.clips import decoded, packets, pan_frames, write_clip

from studio.video.options import VideoOptions
from studio.video.plan import plan_video
from studio.video.run import run_video
from studio.video.workdir import work_folder


def _plan(clip: Path, out: Path, engine: str = "classical", **options):
    cli = {"engine": engine, "scale": 2.0, "seed": 3}
    return plan_video(cli, clip, out, VideoOptions(segment_frames=3, **options))


def _stop_after(frames: int):
    def on_frame(done: int, total: int) -> None:
        if done == frames:
            raise KeyboardInterrupt

    return on_frame


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", pan_frames(8, 32, 32, step=0.7, noise=6))


def test_interrupted_and_continued_equals_one_run(tmp_path: Path, clip: Path) -> None:
    whole, pieces = tmp_path / "whole.mp4", tmp_path / "pieces.mp4"
    assert run_video(_plan(clip, whole)).status == "ok"
    first = run_video(_plan(clip, pieces), _stop_after(5))  # mid-segment: frames 3, 4 kept, segment open
    assert first.status == "interrupted" and not pieces.exists()
    assert work_folder(pieces).is_dir()
    second = run_video(_plan(clip, pieces, resume=True), _stop_after(7))  # stopped again
    assert second.status == "interrupted" and second.frames_this_run >= 1
    third = run_video(_plan(clip, pieces))  # a plain rerun continues too
    assert third.status == "ok" and third.frames_this_run < 8
    assert packets(pieces, "video") == packets(whole, "video")  # the same stream, packet for packet
    assert all((a == b).all() for (_, a), (_, b) in zip(decoded(pieces), decoded(whole)))
    assert packets(pieces, "audio") == packets(clip, "audio")
    assert third.flicker == run_video(_plan(clip, tmp_path / "again.mp4")).flicker
    assert not work_folder(pieces).exists()


def test_a_different_command_starts_afresh(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    run_video(_plan(clip, out), _stop_after(4))
    result = run_video(_plan(clip, out, temporal=0.2))
    assert result.status == "ok" and result.frames_this_run == 8


@pytest.mark.slow
def test_ctrl_c_stops_within_a_second_and_the_same_command_continues(tmp_path: Path) -> None:
    """A real SIGINT to `studio video` with the fast engine (real Real-ESRGAN weights, ncnn on the CPU)."""
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(12, 48, 32, noise=4))
    args = [sys.executable, "-m", "studio", "video", str(clip), "--engine", "fast", "--scale", "2", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole = subprocess.run([*args, "-o", str(tmp_path / "whole.mp4")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out.mp4"
    process = subprocess.Popen([*args, "-o", str(out)], env=env, stderr=subprocess.PIPE, text=True)
    folder = work_folder(out)
    deadline = time.monotonic() + 120
    while not list(folder.glob("frame-*.npy")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    process.wait(timeout=30)
    assert time.monotonic() - sent < 1.5 and process.returncode == 130, process.stderr.read()
    rerun = subprocess.run([*args, "-o", str(out)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0 and "continuing" in rerun.stderr, rerun.stderr
    assert packets(out, "video") == packets(tmp_path / "whole.mp4", "video")
