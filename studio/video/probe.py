"""What a clip is, checked before the first pixel: its video stream, the streams copied along, and its soundness.

`probe_clip` opens the file with PyAV (FFmpeg's libraries from the wheel), refuses what `studio video`
cannot restore with one line each (not a video, a still image, no video stream, a codec FFmpeg cannot
decode, a truncated file), and demuxes every packet once without decoding: that counts the frames exactly
(for progress and ETA) and finds a truncated file before any work is done. Memory stays flat: packets are
counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from studio.errors import InputError
from studio.io import SUPPORTED_EXTENSIONS

STILL_FORMATS = ("image2", "apng", "gif", "webp_pipe", "ico", "tiff_pipe")
"""Demuxers that read single pictures (plus every `*_pipe` image reader): a still image, not a clip."""
VIDEO_SIGNATURES = (b"ftyp", b"\x1a\x45\xdf\xa3", b"RIFF", b"\x00\x00\x01\xba", b"moov", b"mdat", b"free")
"""Starts of MP4/MOV (a box name at offset 4), Matroska/WebM, AVI and MPEG-PS files: such a file that FFmpeg
cannot open is a damaged video rather than something else."""


@dataclass(frozen=True)
class CopiedStream:
    """A stream carried to the output packet for packet (audio, subtitles, data)."""

    index: int
    kind: str
    codec: str
    packets: int


@dataclass
class ClipInfo:
    """The video stream as the output must keep it, and the streams copied along."""

    path: Path
    container: str
    stream_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    rate: Fraction | None
    frames: int
    duration_s: float
    rotation: int
    color_range: int
    color_primaries: int
    color_trc: int
    colorspace: int
    copied: list[CopiedStream] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    stream_metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """For the report and --dry-run."""
        return {
            "container": self.container,
            "codec": self.codec,
            "size": [self.width, self.height],
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "frames": self.frames,
            "frame_rate": str(self.rate) if self.rate else None,
            "time_base": str(self.time_base),
            "duration_s": round(self.duration_s, 3),
            "rotation": self.rotation,
            "copied_streams": [f"{s.index}: {s.kind} ({s.codec}, {s.packets} packets)" for s in self.copied],
        }


def probe_clip(path: Path) -> ClipInfo:
    """Open and check `path`; InputError with one line for anything `studio video` cannot restore."""
    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(_unreadable(path, exc)) from None
    with container:
        if container.format.name in STILL_FORMATS or container.format.name.endswith("_pipe"):
            raise InputError(f"{path}: is a still image, not a video; restore it with `studio restore {path}`")
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise InputError(f"{path}: has no video stream (it holds {kinds})")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else None
        if not codec or not _decodable(codec):
            named = f"video codec {codec!r}" if codec else "its video codec (unknown to FFmpeg)"
            raise InputError(f"{path}: {named} cannot be decoded here (unsupported codec)")
        info = _describe(path, container, stream)
        counts = _count_packets(path, container)
    info.frames = counts.pop(info.stream_index)
    info.copied = [
        CopiedStream(s.index, s.kind, s.codec, counts.get(s.index, 0)) for s in info.copied if s.kind != "video"
    ]
    if info.frames == 0:
        raise InputError(f"{path}: truncated or empty video (no video frames)")
    expected = _stated_frames(path)
    if expected and info.frames < expected:
        raise InputError(f"{path}: truncated video ({info.frames} of {expected} frames present)")
    info.rotation = _rotation(path, info.stream_index)
    return info


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; `studio video` takes one clip")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: is a still image, not a video; restore it with `studio restore {path}`")


def _unreadable(path: Path, exc: BaseException) -> str:
    with open(path, "rb") as handle:
        head = handle.read(12)
    if any(head.startswith(sig) or head[4:8] == sig for sig in VIDEO_SIGNATURES):
        return f"{path}: truncated or corrupt video ({_short(exc)})"
    return f"{path}: not a video, or a format FFmpeg cannot read"


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _decodable(codec: str) -> bool:
    try:
        av.Codec(codec, "r")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
        return False
    return True


def _describe(path: Path, container: Any, stream: Any) -> ClipInfo:
    context = stream.codec_context
    pix_fmt = context.pix_fmt or "yuv420p"
    depth = max(component.bits for component in av.VideoFormat(pix_fmt).components)
    duration = float(container.duration / av.time_base) if container.duration else 0.0
    copied = [
        CopiedStream(s.index, s.type, s.codec_context.name if s.codec_context else "data", 0)
        for s in container.streams
        if s.index != stream.index and s.type in ("audio", "subtitle", "data")
    ]
    return ClipInfo(
        path=path,
        container=container.format.name,
        stream_index=stream.index,
        codec=context.name,
        width=context.width,
        height=context.height,
        pix_fmt=pix_fmt,
        bit_depth=depth,
        time_base=stream.time_base,
        rate=stream.average_rate or stream.guessed_rate,
        frames=0,
        duration_s=duration,
        rotation=0,
        color_range=int(context.color_range),
        color_primaries=int(context.color_primaries),
        color_trc=int(context.color_trc),
        colorspace=int(context.colorspace),
        copied=copied,
        metadata=dict(container.metadata),
        stream_metadata=dict(stream.metadata),
    )


def _count_packets(path: Path, container: Any) -> dict[int, int]:
    """Packets per stream, demuxed to the end without decoding; a read error there means a damaged file."""
    counts = {s.index: 0 for s in container.streams}
    try:
        for packet in container.demux():
            if packet.size:
                counts[packet.stream.index] += 1
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: truncated or corrupt video ({_short(exc)})") from None
    return counts


def _stated_frames(path: Path) -> int:
    """The frame count the container's index states (MP4/MOV), 0 when it states none."""
    with av.open(str(path)) as container:
        return int(container.streams.video[0].frames or 0)


def _rotation(path: Path, index: int) -> int:
    """The display rotation (degrees counter-clockwise) of the first frame, from the container's matrix."""
    with av.open(str(path)) as container:
        try:
            frame = next(container.decode(container.streams[index]))
        except (StopIteration, av.error.FFmpegError) as exc:
            raise InputError(f"{path}: the first video frame cannot be decoded ({_short(exc)})") from None
        return int(round(frame.rotation or 0)) % 360
