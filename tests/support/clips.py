"""Short clips written with PyAV inside the tests: a video track (panning over a real photo, or a synthetic
pattern) with optional noise, plus an audio track and a subtitle track, in any container and codec."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def photo(name: str = "astronaut", side: int = 96) -> np.ndarray:
    """A scikit-image bundled photo (public domain / CC0), cropped square and resized: uint8 RGB."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, name)())
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    square = image.crop((left, top, left + short, top + short)).resize((side, side), Image.Resampling.LANCZOS)
    return np.asarray(square.convert("RGB"))


def pan_frames(
    count: int, width: int, height: int, step: float = 1.0, noise: float = 0.0, seed: int = 0, name: str = "astronaut"
) -> list[np.ndarray]:
    """`count` crops of a real photo, the window moving `step` pixels right per frame, with Gaussian noise
    (sigma `noise` of 255) drawn anew for each frame: a small camera pan filmed by a noisy sensor."""
    source = photo(name, max(width, height) + int(np.ceil(step * count)) + 8).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        x = step * index
        left, frac = int(x), x - int(x)
        window = source[4 : 4 + height, left : left + width + 1]
        crop = (1 - frac) * window[:, :width] + frac * window[:, 1 : width + 1]
        if noise:
            crop = crop + rng.normal(0, noise, crop.shape)
        frames.append(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
    return frames


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    *,
    rate: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: bool = True,
    subtitles: bool = False,
    data: bool = False,
    rotation: int = 0,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 12800),
    color: tuple[int, int, int, int] | None = (1, 1, 1, 1),
    options: dict[str, str] | None = None,
) -> Path:
    """Write `frames` (uint8 RGB) as a clip; `pts` in `time_base` gives a variable frame rate; `data` adds a data
    stream (MP4 only) with one opaque record per frame.
    `color`: (range, primaries, trc, matrix) tags, default BT.709 limited range."""
    stamps = pts if pts is not None else [round(i / rate / time_base) for i in range(len(frames))]
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = options or ({"crf": "10"} if codec == "libx264" else {})
        if color:
            context = video.codec_context
            context.color_range, context.color_primaries, context.color_trc, context.colorspace = color
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=48000, layout="stereo") if audio else None
        text = container.add_mux_stream("mov_text") if subtitles else None
        side = container.add_data_stream("bin_data") if data else None
        container.metadata["title"] = "studio test clip"
        for stamp, rgb in zip(stamps, frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace=color[3] if color else None, dst_color_range=color[0] if color else None
            )
            frame.pts, frame.time_base = stamp, time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, float(stamps[-1] * time_base) + 1 / rate)
        if text is not None:
            _write_subtitle(container, text)
        for index in range(len(frames) if side is not None else 0):  # one opaque record per frame (telemetry)
            packet = av.Packet(b"record %d" % index)
            packet.stream, packet.time_base = side, time_base
            packet.pts = packet.dts = stamps[index]
            container.mux(packet)
    return path


def _write_tone(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    samples = 1024
    total = int(seconds * 48000)
    for start in range(0, total, samples):
        t = (np.arange(start, start + samples) / 48000.0).astype(np.float32)
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _write_subtitle(container: av.container.OutputContainer, stream: av.stream.Stream) -> None:
    """One mov_text cue: two length bytes and the text, as MP4 timed text stores it."""
    text = b"hello"
    packet = av.Packet(len(text).to_bytes(2, "big") + text)
    packet.stream = stream
    packet.time_base = Fraction(1, 1000)
    packet.pts = packet.dts = 0
    packet.duration = 200
    container.mux(packet)


def packets(path: Path, kind: str) -> list[tuple[int | None, int | None, bytes]]:
    """(pts, dts, bytes) of every packet of the first stream of `kind`: what 'copied untouched' compares."""
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        return [(p.pts, p.dts, bytes(p)) for p in container.demux(stream) if p.size]


def decoded(path: Path) -> list[tuple[int, np.ndarray]]:
    """(pts, RGB uint8) of every video frame."""
    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
