"""Frames in and out: decode to float RGB in display orientation, and back to the encoder's pixels.

Decoding runs in a worker thread a few frames ahead of the engine (FFmpeg releases the GIL), so reading
the clip overlaps with inference; the queue is short, so memory does not grow with the clip.
The conversion to RGB uses the clip's own matrix (BT.601/709/2020) and range (limited/full), and the
encoder gets the same ones back, so colours survive the round trip. Clips deeper than 8 bits decode to
16-bit RGB, so 10-bit detail reaches the engine and the encoder.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from studio.errors import InputError
from studio.video.probe import ClipInfo

PREFETCH = 4
"""Frames decoded ahead of the engine."""


@dataclass
class Frame:
    """One decoded frame: its index, its time stamp (the source stream's time base) and its pixels."""

    index: int
    pts: int
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], display orientation


def to_display(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn coded pixels upright: the display matrix rotates counter-clockwise by `rotation` degrees."""
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation % 360 else rgb


def to_coded(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Undo `to_display`: the encoder stores pixels as the source did, with the same display matrix."""
    return np.ascontiguousarray(np.rot90(rgb, -(rotation // 90))) if rotation % 360 else rgb


def rgb_format(info: ClipInfo) -> str:
    """The RGB layout frames travel in: 16 bits per channel for clips deeper than 8 bits."""
    return "rgb48le" if info.bit_depth > 8 else "rgb24"


def frame_to_rgb(frame: Any, info: ClipInfo) -> np.ndarray:
    """A decoded VideoFrame as float32 RGB in [0, 1] (coded orientation), using the clip's matrix and range."""
    fmt = rgb_format(info)
    array = frame.reformat(
        format=fmt,
        src_colorspace=frame.colorspace or None,
        src_color_range=frame.color_range or info.color_range or None,
    ).to_ndarray()
    return array.astype(np.float32) / (65535.0 if fmt == "rgb48le" else 255.0)


def quantise(rgb: np.ndarray, info: ClipInfo) -> np.ndarray:
    """float RGB -> the integer pixels the encoder receives (and the resume state keeps)."""
    if rgb_format(info) == "rgb48le":
        return np.rint(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantise(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / (65535.0 if pixels.dtype == np.uint16 else 255.0)


def decode_frames(info: ClipInfo, start: int = 0) -> Iterator[Frame]:
    """Every frame from index `start - 1` on (the one before `start` seeds the temporal filter on a resume),
    upright, decoded in a worker thread a few frames ahead. Earlier frames are decoded and dropped."""
    frames: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def work() -> None:
        try:
            with av.open(str(info.path)) as container:
                stream = container.streams[info.stream_index]
                stream.thread_type = "AUTO"
                for index, frame in enumerate(container.decode(stream)):
                    if stop.is_set():
                        return
                    if index >= start - 1:
                        rgb = to_display(frame_to_rgb(frame, info), info.rotation)
                        _put(frames, stop, Frame(index, frame.pts if frame.pts is not None else index, rgb))
        except av.error.FFmpegError as exc:
            _put(frames, stop, InputError(f"{info.path}: video frame cannot be decoded ({exc})"))
        _put(frames, stop, None)

    worker = threading.Thread(target=work, name="studio-decode", daemon=True)
    worker.start()
    try:
        while (item := _get(frames)) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


def _put(frames: queue.Queue[Any], stop: threading.Event, item: Any) -> None:
    while not stop.is_set():
        try:
            frames.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(frames: queue.Queue[Any]) -> Any:
    """Wait in short steps, so Ctrl-C reaches the main thread at once."""
    while True:
        try:
            return frames.get(timeout=0.1)
        except queue.Empty:
            continue
