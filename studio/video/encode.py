"""Encoding in a worker thread, segment by segment, while the engine restores the next frames.

The main thread hands each finished frame over a short queue; the worker keeps it in the work folder
(so a restart can continue from it) and feeds it to the open segment's encoder (FFmpeg releases the GIL, so
encoding overlaps with inference). Each segment is written to a hidden temporary file and renamed when
complete; see workdir.py for why segments make a restart give the same file.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from studio.video.codecs import SEGMENT_FORMAT, EncoderSpec, open_video_stream
from studio.video.frames import to_coded
from studio.video.probe import ClipInfo
from studio.video.workdir import WorkFolder

QUEUE_FRAMES = 4
_FINISH = object()


@dataclass
class Finished:
    """A restored frame on its way to the encoder."""

    index: int
    pts: int
    pixels: np.ndarray  # quantised RGB, display orientation
    stats: dict[str, Any]


class SegmentEncoder:
    """Keeps and encodes finished frames in order, one segment file per `segment_frames` frames."""

    def __init__(self, work: WorkFolder, spec: EncoderSpec, info: ClipInfo, size: tuple[int, int]) -> None:
        self.work, self.spec, self.info = work, spec, info
        self.size = size  # (width, height) of the encoded (coded-orientation) frames
        self.suffix = "." + SEGMENT_FORMAT.get(spec.codec, "mp4")
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_FRAMES)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._container: Any = None
        self._stream: Any = None
        self._segment = -1
        self._thread = threading.Thread(target=self._work, name="studio-encode", daemon=True)

    def start(self, replay: list[tuple[int, int]]) -> None:
        """Start the worker; `replay` (index, pts) are kept frames of the open segment, encoded again first."""
        for index, pts in replay:
            self._encode(index, pts, self.work.load_frame(index))
        self._thread.start()

    def put(self, item: Finished) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Encode what is queued, close the last segment, and wait for the worker."""
        self.put(_FINISH)  # type: ignore[arg-type]
        while self._thread.is_alive():
            self._thread.join(0.1)
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """After Ctrl-C: stop at once; the open segment's temporary file is dropped, kept frames stay."""
        self.stop.set()
        self._thread.join(1.0)
        if not self._thread.is_alive():  # else the worker still holds the encoder: its hidden file is ignored
            self._close(keep=False)

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _FINISH:
                    self._close(keep=True)
                    return
                self.work.keep_frame(item.index, item.pixels, item.stats)
                self._encode(item.index, item.pts, item.pixels)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by put/finish
            self.error = exc

    def _encode(self, index: int, pts: int, pixels: np.ndarray) -> None:
        segment = index // self.work.segment_frames
        if segment != self._segment:
            self._close(keep=True)
            self._open(segment)
        coded = to_coded(pixels, self.info.rotation)
        frame = av.VideoFrame.from_ndarray(coded, format="rgb48le" if coded.dtype == np.uint16 else "rgb24")
        frame = frame.reformat(
            format=self.spec.pix_fmt,
            dst_colorspace=self.info.colorspace or None,
            dst_color_range=self.info.color_range or None,
        )
        frame.pts = pts
        frame.time_base = self.info.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, segment: int) -> None:
        self._segment = segment
        self._temp = self.work.path / f".seg-{segment:05d}.part{self.suffix}"
        self._container = av.open(str(self._temp), "w", format=self.suffix[1:])
        self._stream = open_video_stream(self._container, self.spec, self.info, self.size)

    def _close(self, keep: bool) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        if keep:
            for packet in self._stream.encode():
                container.mux(packet)
        container.close()
        temp: Path = self._temp
        if keep:
            temp.replace(self.work.segment_path(self._segment, self.suffix))
            self.work.segment_done(self._segment)
        else:
            temp.unlink(missing_ok=True)
