"""JPEG XL through imagecodecs (libjxl), with the metadata boxes of the JXL container written and read here.

Pillow has no JPEG XL codec, and the Pillow plugin on PyPI decodes 16-bit colour as 8 bits and cannot
embed an ICC profile; imagecodecs' libjxl binding keeps 8 and 16 bits, lossless and lossy, but takes
pixels only. So studio wraps the codestream in the ISO BMFF container of ISO/IEC 18181-2 itself: a
libjxl's own container (signature, `ftyp`, the `jxll` level box a 16-bit codestream needs, `jxlc`)
gets `Exif` (EXIF with studio's provenance and print resolution, as for WebP) and `xml ` (XMP) boxes
inserted before the codestream. The binding cannot embed an ICC profile either: the codestream
says sRGB, so the writer refuses pictures whose profile is not sRGB instead of shifting their colours.
"""

from __future__ import annotations

import struct

import numpy as np

SIGNATURE_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
CODESTREAM_MARK = b"\xff\x0a"
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def is_jxl(head: bytes) -> bool:
    """Whether bytes start a JPEG XL file: a bare codestream or the container."""
    return head.startswith(CODESTREAM_MARK) or head.startswith(SIGNATURE_BOX)


def encode(planes: np.ndarray, quality: int) -> bytes:
    """libjxl's container for uint8/uint16 (H, W, C) planes; quality 100 is mathematically lossless."""
    import imagecodecs

    pixels = planes[..., 0] if planes.shape[2] == 1 else planes
    if quality >= 100:
        return bytes(imagecodecs.jpegxl_encode(pixels, lossless=True, usecontainer=True))
    return bytes(imagecodecs.jpegxl_encode(pixels, level=quality, usecontainer=True))


def with_metadata(encoded: bytes, exif: bytes | None, xmp: bytes | None) -> bytes:
    """libjxl's container with metadata boxes before the codestream (EXIF as TIFF bytes, no "Exif" header)."""
    if not encoded.startswith(SIGNATURE_BOX):
        raise ValueError("libjxl did not write a container")
    boxes = [_box(kind, payload) for kind, payload in _boxes(encoded[len(SIGNATURE_BOX) :])]
    first_codestream = next(i for i, box in enumerate(boxes) if box[4:8] in (b"jxlc", b"jxlp"))
    metadata = []
    if exif:
        tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        metadata.append(_box(b"Exif", struct.pack(">I", 0) + tiff))
    if xmp:
        metadata.append(_box(b"xml ", xmp))
    return SIGNATURE_BOX + b"".join(boxes[:first_codestream] + metadata + boxes[first_codestream:])


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def split(data: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """(codestream, EXIF as TIFF bytes, XMP) of a JXL file; a bare codestream has no metadata.

    Raises ValueError for a damaged container (a box that runs past the end, no codestream).
    """
    if data.startswith(CODESTREAM_MARK):
        return data, None, None
    exif = xmp = None
    parts: list[bytes] = []
    for kind, payload in _boxes(data):
        if kind == b"brob":  # a Brotli-compressed box: its real type, then the compressed payload
            import imagecodecs

            kind, payload = payload[:4], bytes(imagecodecs.brotli_decode(payload[4:]))
        if kind == b"Exif" and len(payload) >= 4:
            exif = payload[4 + struct.unpack(">I", payload[:4])[0] :]
        elif kind == b"xml ":
            xmp = payload
        elif kind == b"jxlc":
            parts = [payload]
        elif kind == b"jxlp" and len(payload) >= 4:  # partial codestream boxes, each after a 4-byte index
            parts.append(payload[4:])
    if not parts:
        raise ValueError("no JPEG XL codestream in the container")
    return b"".join(parts), exif, xmp


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise ValueError(f"the '{kind.decode('latin-1')}' box runs past the end of the file")
        found.append((kind, data[offset + header : offset + size]))
        offset += size
    return found


def image_size(codestream: bytes) -> tuple[int, int]:
    """(width, height) from the codestream's SizeHeader (ISO/IEC 18181-1), without decoding any pixel.

    Lets the pixel budget refuse a huge file before libjxl allocates it.
    """
    if not codestream.startswith(CODESTREAM_MARK):
        raise ValueError("not a JPEG XL codestream")
    bits = _Bits(codestream[2:])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = _RATIOS[ratio]
        return height * numerator // denominator, height
    width = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    return width, height


class _Bits:
    """JPEG XL's bit reader: least significant bit first."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data[:16], "little")
        self.position = 0

    def read(self, count: int) -> int:
        result = (self.value >> self.position) & ((1 << count) - 1)
        self.position += count
        return result

    def u32_size(self) -> int:
        """A dimension: U32(Bits(9), Bits(13), Bits(18), Bits(30)) + 1."""
        return self.read((9, 13, 18, 30)[self.read(2)]) + 1


def decode(codestream: bytes) -> np.ndarray:
    """Pixels as libjxl gives them: uint8 or uint16, (H, W) or (H, W, C), orientation applied."""
    import imagecodecs

    return np.asarray(imagecodecs.jpegxl_decode(codestream))
