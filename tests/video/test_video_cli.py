"""`studio video` end to end on clips written in the test: size, frame count, time stamps (constant and
variable frame rate), rotation, colour tags, 10-bit, the copied audio and subtitle packets, the container's
metadata and provenance, the codecs, and the sidecar and report."""

from __future__ import annotations

import json
import shlex
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from support.clips import decoded, packets, pan_frames, write_clip
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()


def video(*args: object):
    return runner.invoke(app, ["video", *[str(a) for a in args]])


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", pan_frames(6, 40, 32, noise=2), subtitles=True, data=True)


def test_classical_x2_keeps_frames_time_stamps_sound_subtitles_data_and_metadata(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "clip_x2.mp4"
    result = video(
        clip, "-o", out, "--engine", "classical", "--scale", "2", "--sidecar", "--report", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.output
    source, restored = decoded(clip), decoded(out)
    assert [pts for pts, _ in restored] == [pts for pts, _ in source]
    assert restored[0][1].shape == (64, 80, 3)
    for kind in ("audio", "subtitle", "data"):
        assert packets(out, kind) == packets(clip, kind)  # same bytes, same time stamps
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 12800) and stream.codec_context.name == "h264"
        assert container.metadata["title"] == "studio test clip"
        provenance = json.loads(container.metadata["studio"])
        frame = next(container.decode(stream))
        assert (frame.color_range, frame.color_primaries, frame.color_trc, frame.colorspace) == (1, 1, 1, 1)
    assert provenance["engine"] == "classical" and provenance["video"]["encoder"]["crf"] == 18
    assert provenance["command"].startswith(f"studio video {clip} -o {out} --engine classical")
    assert json.loads((tmp_path / "clip_x2.mp4.json").read_text())["command"] == provenance["command"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "ok" and report["frames"]["done"] == 6 and report["flicker"]["pairs"] == 5
    assert not list(tmp_path.glob(".*"))  # no work folder or temporary file left


def test_the_restored_frames_follow_the_source(tmp_path: Path, clip: Path) -> None:
    """Each output frame is its own input frame enlarged (not a neighbour's, not shifted in colour)."""
    out = tmp_path / "out.mp4"
    assert video(clip, "-o", out, "--engine", "classical", "--scale", "2", "--temporal", "0").exit_code == 0
    sources = [rgb.astype(np.float32) for _, rgb in decoded(clip)]
    for index, (_, big) in enumerate(decoded(out)):
        shrunk = big.reshape(32, 2, 40, 2, 3).mean(axis=(1, 3))
        errors = [np.abs(shrunk - source).mean() for source in sources]
        assert errors[index] < 5.0 and int(np.argmin(errors)) == index


def test_variable_frame_rate_time_stamps_are_kept(tmp_path: Path) -> None:
    stamps = [0, 400, 1300, 1500, 2900, 3000]  # 1/12800 s: irregular gaps
    clip = write_clip(tmp_path / "vfr.mp4", pan_frames(6, 32, 32), pts=stamps, audio=False)
    out = tmp_path / "out.mp4"
    assert video(clip, "-o", out, "--engine", "classical", "--scale", "2").exit_code == 0
    assert [pts for pts, _ in decoded(out)] == stamps


def test_rotation_is_kept_and_the_engine_sees_the_upright_picture(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "phone.mp4", pan_frames(3, 48, 32), rotation=90, audio=False)
    out = tmp_path / "out.mp4"
    result = video(clip, "-o", out, "--engine", "classical", "--scale", "2", "--dry-run")
    assert result.exit_code == 0 and '"rotation": 90' in result.output and "64," in result.output
    assert video(clip, "-o", out, "--engine", "classical", "--scale", "2").exit_code == 0
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 90 and (frame.width, frame.height) == (96, 64)  # coded as the source, doubled


def test_ten_bit_in_gives_ten_bit_out(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "deep.mkv", pan_frames(3, 32, 32), pix_fmt="yuv420p10le", audio=False)
    out = tmp_path / "out.mkv"
    assert video(clip, "-o", out, "--engine", "classical", "--scale", "2").exit_code == 0
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert frame.format.name == "yuv420p10le"
        levels = np.unique(frame.to_ndarray(format="rgb48le")[..., 1])
    assert len(levels) > 256  # the enlarged gradients keep steps finer than 8 bits


@pytest.mark.parametrize(
    ("codec", "suffix", "encoded", "pix_fmt"),
    [
        ("h265", ".mp4", "hevc", "yuv420p"),
        ("prores", ".mov", "prores", "yuv422p10le"),
        ("ffv1", ".mkv", "ffv1", "yuv420p"),
    ],
)
def test_codecs(tmp_path: Path, codec: str, suffix: str, encoded: str, pix_fmt: str) -> None:
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(3, 32, 32))
    out = tmp_path / f"out{suffix}"
    result = video(clip, "-o", out, "--engine", "classical", "--scale", "2", "--codec", codec)
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == encoded and stream.codec_context.pix_fmt == pix_fmt
        assert len(list(container.decode(stream))) == 3
    assert [p[2] for p in packets(out, "audio")] == [p[2] for p in packets(clip, "audio")]


def test_crf_sets_the_quality(tmp_path: Path) -> None:
    """`--crf 0` (lossless) keeps far more than `--crf 30`."""
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(3, 32, 32), audio=False, color=None)
    small, large = tmp_path / "crf0.mp4", tmp_path / "crf30.mp4"
    assert video(clip, "-o", small, "--engine", "classical", "--scale", "2", "--crf", "0").exit_code == 0
    assert video(clip, "-o", large, "--engine", "classical", "--scale", "2", "--crf", "30").exit_code == 0
    assert small.stat().st_size > 2 * large.stat().st_size


def test_info_shows_a_clips_provenance_and_its_command_reproduces_the_clip(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    assert video(clip, "-o", out, "--engine", "classical", "--scale", "2", "--temporal", "0.3").exit_code == 0
    shown = runner.invoke(app, ["info", str(out), "--json"])
    command = json.loads(shown.stdout)["command"]
    assert "--temporal 0.3" in command and "--seed" in command
    first = packets(out, "video")
    again = runner.invoke(app, [*shlex.split(command)[1:], "--overwrite"])
    assert again.exit_code == 0, again.output
    assert packets(out, "video") == first
