"""The output's video encoder: codec, pixel format, quality options, and whether the container takes it all.

`--codec h264|h265|prores|ffv1` names FFmpeg's libx264, libx265, prores_ks and ffv1. Quality is `--crf`
for h264/h265 (default 18, the guide's libx264 setting; 0 = lossless), ProRes 422 HQ, and FFV1 is always
lossless. The pixel format keeps the source's depth where the codec allows it (10-bit in, 10-bit out) and
its chroma layout where the codec has it. `check_container` builds the output's header in memory before any
work, so a codec or copied stream the container cannot hold is refused up front.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from studio.errors import UsageError
from studio.video.options import CODECS, DEFAULT_CRF
from studio.video.probe import ClipInfo

ENCODERS = dict(zip(CODECS, ("libx264", "libx265", "prores_ks", "ffv1")))
CODEC_IDS = dict(zip(CODECS, ("h264", "hevc", "prores", "ffv1")))
"""FFmpeg's names of the codecs, as a muxer's supported_codecs lists them."""
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Output containers by extension: the ones that keep time bases, display matrices and copied streams."""
SEGMENT_FORMAT = {"prores": "mov"}
"""The container of the work folder's segments (default mp4): both keep the stream's exact time base."""


@dataclass(frozen=True)
class EncoderSpec:
    """How every segment's encoder is opened: identical for all of them, so their packets join into one stream."""

    codec: str  # h264 | h265 | prores | ffv1
    encoder: str
    pix_fmt: str
    options: dict[str, str]
    crf: int | None

    def describe(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "encoder": self.encoder,
            "pix_fmt": self.pix_fmt,
            "crf": self.crf,
            "options": self.options,
        }


def encoder_spec(codec: str, crf: int | None, info: ClipInfo) -> EncoderSpec:
    """The encoder for `codec`, the source's depth and chroma where the codec allows; UsageError otherwise."""
    if codec not in ENCODERS:
        raise UsageError(f"--codec {codec!r}: expected one of {', '.join(ENCODERS)}")
    if crf is not None and codec not in ("h264", "h265"):
        raise UsageError(f"--crf sets h264/h265 quality; {codec} is {'lossless' if codec == 'ffv1' else 'ProRes HQ'}")
    if crf is not None and not 0 <= crf <= 51:
        raise UsageError(f"--crf {crf}: expected 0 (lossless) to 51")
    encoder = ENCODERS[codec]
    pix_fmt = _pix_fmt(encoder, info)
    options: dict[str, str] = {}
    if codec in ("h264", "h265"):
        crf = DEFAULT_CRF if crf is None else crf
        options["crf"] = str(crf)
        if codec == "h265":
            options["x265-params"] = "log-level=error" + (":lossless=1" if crf == 0 else "")
    elif codec == "prores":
        options["profile"] = "3"  # 422 HQ
    else:
        options.update(level="3", slicecrc="1")
    return EncoderSpec(codec, encoder, pix_fmt, options, crf)


def _pix_fmt(encoder: str, info: ClipInfo) -> str:
    """The source's pixel format when the encoder takes it, else 4:2:0 (4:2:2 for ProRes) at the source's depth
    (10-bit when the source is deeper than 8 bits and the encoder has it)."""
    supported = [f.name for f in av.Codec(encoder, "w").video_formats or []]
    source = info.pix_fmt.replace("yuvj", "yuv")
    if source in supported and source.startswith("yuv"):
        return source
    chroma = "yuv422p" if encoder == "prores_ks" else "yuv420p"
    if info.bit_depth > 8 or encoder == "prores_ks":
        deep = f"{chroma}10le"
        if deep in supported:
            return deep
    return chroma if chroma in supported else supported[0]


def container_format(output: Path) -> str:
    """The muxer for -o's extension; UsageError for one studio does not write."""
    suffix = output.suffix.lower()
    if suffix not in CONTAINERS:
        raise UsageError(f"-o {output}: studio writes video as {', '.join(CONTAINERS)}, not {suffix or '(none)'}")
    return CONTAINERS[suffix]


def open_video_stream(container: Any, spec: EncoderSpec, info: ClipInfo, size: tuple[int, int]) -> Any:
    """Add the encoding video stream: the source's time base, frame rate, colour tags and display matrix."""
    stream = container.add_stream(spec.encoder, rate=info.rate or 25)
    width, height = size
    stream.width, stream.height = width, height
    stream.pix_fmt = spec.pix_fmt
    stream.time_base = info.time_base
    context = stream.codec_context
    context.time_base = info.time_base
    context.color_range = info.color_range
    context.color_primaries = info.color_primaries
    context.color_trc = info.color_trc
    context.colorspace = info.colorspace
    context.thread_count = 0
    stream.options = dict(spec.options)
    if info.rotation:
        stream.set_display_rotation(info.rotation)
    return stream


def coded_size(info: ClipInfo, display_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the encoded pixels for an output of `display_size` (rotated back when the source is)."""
    width, height = display_size
    return (height, width) if info.rotation % 180 else (width, height)


def check_container(output: Path, spec: EncoderSpec, info: ClipInfo, display_size: tuple[int, int]) -> None:
    """Ask the output's muxer (opened in memory) about the codec and every copied stream: a container that
    cannot hold one (ProRes in .mp4, MP4 subtitles in .mkv) fails here, before any work; odd sides too."""
    fmt = container_format(output)
    width, height = coded_size(info, display_size)
    if spec.pix_fmt.startswith("yuv420") or spec.pix_fmt.startswith("yuv422"):
        if width % 2 or height % 2:
            raise UsageError(
                f"{spec.codec} with {spec.pix_fmt} needs an even width and height; the output would be "
                f"{width}x{height}: choose a --scale that gives even sides"
            )
    if CODEC_IDS[spec.codec] not in av.open(io.BytesIO(), "w", format=fmt).supported_codecs:
        raise UsageError(f"-o {output}: a {output.suffix} file cannot hold {spec.codec}; use {_home(spec.codec)}")
    with av.open(str(info.path)) as source:
        for copied in info.copied:
            if not _header_accepts(fmt, source.streams[copied.index]):
                raise UsageError(
                    f"-o {output}: stream {copied.index} ({copied.kind}, {copied.codec}) cannot go into a "
                    f"{output.suffix} file; use the source's container ({info.path.suffix})"
                )


def _header_accepts(fmt: str, template: Any) -> bool:
    """Whether the muxer writes a header for a copy of `template`: the test the final remux would fail."""
    memory = av.open(io.BytesIO(), "w", format=fmt)
    try:
        memory.add_stream_from_template(template)
        memory.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError):
        return False
    finally:
        try:
            memory.close()
        except av.error.FFmpegError:
            pass


def _home(codec: str) -> str:
    return {"prores": ".mov or .mkv", "ffv1": ".mkv"}.get(codec, ".mp4, .mov or .mkv")
