"""Bad clips and impossible requests: one line each, the exit code `studio restore` uses, nothing written under
the output name, and --dry-run gives the same verdict as the real run."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support.clips import pan_frames, write_clip
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()
MODES = pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])


def video(*args: object, dry_run: bool = False):
    return runner.invoke(app, ["video", *[str(a) for a in args], *(["--dry-run"] if dry_run else [])])


def refused(result, code: int, words: str) -> None:
    """One line naming the problem, the expected exit code, no traceback."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output, result.output


def _written(folder: Path, *known: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p not in known)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", pan_frames(4, 32, 32), subtitles=True)


def _truncated(tmp_path: Path, faststart: bool) -> Path:
    whole = (
        write_clip(tmp_path / "whole.mp4", pan_frames(24, 32, 32, noise=8), audio=False, options={"crf": "0"})
        if not faststart
        else _faststart(tmp_path)
    )
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    whole.unlink()
    return cut


def _faststart(tmp_path: Path) -> Path:
    """The same clip with its index (moov) first, as streaming files are: cut, it still opens."""
    plain = write_clip(tmp_path / "plain.mp4", pan_frames(24, 32, 32, noise=8), audio=False, options={"crf": "0"})
    moved = tmp_path / "whole.mp4"
    with av.open(str(plain)) as source, av.open(str(moved), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    plain.unlink()
    return moved


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def _unknown_codec(tmp_path: Path) -> Path:
    """A clip whose video sample entry names a codec no decoder knows (the 'avc1' tag renamed)."""
    data = write_clip(tmp_path / "known.mp4", pan_frames(3, 32, 32), audio=False).read_bytes()
    at = data.rindex(b"avc1")  # the sample description in the index; the first ones are file-type brands
    path = tmp_path / "odd.mp4"
    path.write_bytes(data[:at] + b"zzzz" + data[at + 4 :])
    (tmp_path / "known.mp4").unlink()
    return path


BAD_CLIPS = {
    "not-a-video": (lambda tmp: _text(tmp / "notes.mp4"), "not a video"),
    "truncated": (lambda tmp: _truncated(tmp, faststart=False), "truncated or corrupt video"),
    "truncated-streamable": (lambda tmp: _truncated(tmp, faststart=True), "truncated"),
    "unsupported-codec": (_unknown_codec, "unsupported codec"),
    "no-video-stream": (_audio_only, "has no video stream"),
    "still-image": (lambda tmp: _png(tmp / "photo.png"), "is a still image"),
    "still-image-named-mp4": (lambda tmp: _png(tmp / "photo.mp4", "PNG"), "is a still image"),
}


def _text(path: Path) -> Path:
    path.write_text("not a video at all\n" * 50)
    return path


def _png(path: Path, fmt: str | None = None) -> Path:
    Image.fromarray(pan_frames(1, 32, 32)[0]).save(path, format=fmt)
    return path


@MODES
@pytest.mark.parametrize("case", sorted(BAD_CLIPS))
def test_a_bad_clip_is_one_line_and_exit_1(tmp_path: Path, case: str, dry_run: bool) -> None:
    make, words = BAD_CLIPS[case]
    source = make(tmp_path)
    out = tmp_path / "out.mp4"
    refused(video(source, "-o", out, "--engine", "classical", dry_run=dry_run), 1, words)
    assert _written(tmp_path, source) == []


def test_a_video_given_to_restore_points_to_studio_video(tmp_path: Path, clip: Path) -> None:
    result = runner.invoke(app, ["restore", str(clip), "-o", str(tmp_path / "out.png"), "--engine", "classical"])
    assert result.exit_code == 1 and "is a video; restore it with `studio video" in result.output


UP_FRONT = {
    "prores-in-mp4": (["--codec", "prores"], "out.mp4", 2, "cannot hold prores"),
    "mp4-subtitles-in-mkv": ([], "out.mkv", 2, "stream 2 (subtitle, mov_text)"),
    "crf-with-ffv1": (["--codec", "ffv1", "--crf", "10"], "out.mkv", 2, "--crf sets h264/h265 quality"),
    "temporal-out-of-range": (["--temporal", "1.5"], "out.mp4", 2, "--temporal 1.5"),
    "unknown-container": ([], "out.avi", 2, "studio writes video as"),
    "face-weights-missing": (["--faces", "gfpgan"], "out.mp4", 3, "studio weights pull gfpgan-1.4"),
    "nothing-to-resume": (["--resume"], "out.mp4", 2, "--resume"),
}


@MODES
@pytest.mark.parametrize("case", sorted(UP_FRONT))
def test_up_front_checks(tmp_path: Path, clip: Path, case: str, dry_run: bool) -> None:
    flags, name, code, words = UP_FRONT[case]
    result = video(clip, "-o", tmp_path / name, "--engine", "classical", *flags, dry_run=dry_run)
    refused(result, code, words)
    assert _written(tmp_path, clip) == []


@MODES
def test_an_existing_output_is_kept(tmp_path: Path, clip: Path, dry_run: bool) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    refused(video(clip, "-o", out, "--engine", "classical", dry_run=dry_run), 1, "already exists")
    assert out.read_bytes() == b"keep me"


def test_odd_sides_are_refused_before_work(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(2, 34, 34), audio=False)
    refused(video(clip, "-o", tmp_path / "out.mp4", "--engine", "classical", "--scale", "1.5"), 2, "even width")


@MODES
def test_a_data_stream_the_container_cannot_hold_is_refused_before_work(tmp_path: Path, dry_run: bool) -> None:
    """An MP4 with a data stream (telemetry) to .mkv: the muxer's header test fails up front, not after the work."""
    clip = write_clip(tmp_path / "clip.mp4", pan_frames(2, 32, 32), data=True)
    refused(video(clip, "-o", tmp_path / "out.mkv", "--engine", "classical", dry_run=dry_run), 2, "stream 2 (data")
    assert _written(tmp_path, clip) == []
