"""The final file: the segments' video packets and the source's other streams, remuxed into one container.

No packet is decoded or re-encoded here. Audio, subtitle and data packets are copied from the source as they
are (the same bytes and time stamps); video packets come from the segments in order. Both are merged by
time, so the container interleaves them as a player expects and memory stays flat. The container's
metadata is the source's, plus studio's provenance as JSON under the `studio` key (MP4/MOV write it with
`use_metadata_tags`). The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av

from studio.errors import InputError
from studio.io import atomic
from studio.video.codecs import container_format
from studio.video.probe import ClipInfo

METADATA_KEY = "studio"
DROPPED_METADATA = ("encoder", "major_brand", "minor_version", "compatible_brands")
"""Container tags the muxer writes itself."""


def write_output(output: Path, segments: list[Path], info: ClipInfo, provenance: dict[str, Any]) -> None:
    """Join `segments` and the source's copied streams into `output`, atomically."""
    fmt = container_format(output)
    with atomic(output) as temp:
        options = {"movflags": "use_metadata_tags"} if fmt in ("mp4", "mov") else {}
        with av.open(str(temp), "w", format=fmt, options=options) as out, av.open(str(info.path)) as source:
            _metadata(out, info, provenance)
            first = av.open(str(segments[0]))
            try:
                video = out.add_stream_from_template(first.streams.video[0])
            finally:
                first.close()
            video.time_base = info.time_base
            video.metadata.update(info.stream_metadata)
            targets = {info.stream_index: video}
            for copied in info.copied:
                template = source.streams[copied.index]
                stream = out.add_stream_from_template(template)
                stream.metadata.update(template.metadata)
                stream.disposition = template.disposition
                targets[copied.index] = stream
            copied_streams = [source.streams[c.index] for c in info.copied]
            for _, _, stream_index, packet in heapq.merge(
                _timed(_segment_packets(segments), info.stream_index),
                _timed(source.demux(copied_streams) if copied_streams else iter(()), None),
            ):
                packet.stream = targets[stream_index]
                out.mux(packet)


def _metadata(out: Any, info: ClipInfo, provenance: dict[str, Any]) -> None:
    for key, value in info.metadata.items():
        if key not in DROPPED_METADATA:
            out.metadata[key] = value
    out.metadata[METADATA_KEY] = json.dumps(provenance, default=str, separators=(",", ":"))


def _segment_packets(segments: list[Path]) -> Iterator[Any]:
    for path in segments:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    yield packet


def _timed(packets: Iterator[Any], stream_index: int | None) -> Iterator[tuple[float, int, int, Any]]:
    """(time in seconds, order, source stream index, packet): the key heapq.merge sorts on.

    `order` keeps packets of equal time in their file order and never lets the packets themselves be compared.
    """
    seconds = 0.0
    for order, packet in enumerate(packets):
        if packet.size == 0:
            continue
        stamp = packet.dts if packet.dts is not None else packet.pts
        if stamp is not None:  # a packet without a time goes right after the one before it
            seconds = float(stamp * packet.time_base)
        index = stream_index if stream_index is not None else packet.stream.index
        yield seconds, order, index, packet


def read_clip_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance `write_output` stored in a clip's container metadata (None: not a studio output)."""
    try:
        with av.open(str(path)) as container:
            text = container.metadata.get(METADATA_KEY)
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot read the video's metadata ({exc})") from None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
