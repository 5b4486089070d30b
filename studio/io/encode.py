"""Encoders: a `Picture` and its provenance into PNG, JPEG, WebP, TIFF, AVIF or JPEG XL bytes, 8 or 16 bits.

Pillow writes 8-bit files (AVIF through its bundled libavif). It cannot hold 16-bit colour, so OpenCV
encodes 16-bit PNG pixels (the metadata chunks are spliced in by hand), tifffile writes 16-bit TIFF, and
libjxl (through imagecodecs, see `studio.io.jxl`) writes JPEG XL at either depth.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from studio.errors import OutputError
from studio.io import jxl
from studio.io.metadata import COMMENT_PREFIX, PROVENANCE_KEY, exif_resolution, exif_with_provenance
from studio.io.picture import Picture
from studio.messages import warn


def encode(
    target: Path, picture: Picture, fmt: str, quality: int, provenance: str | Callable[[], str], shown: str
) -> None:
    """Encode into `target` (a temporary file); warnings name `shown`, the output's real name.

    `provenance` may be a callable: PNG pixels are then compressed first and the JSON is asked for only
    after, so whatever finishes it (quality figures measured in another thread) overlaps the compression.
    """
    if fmt == "png":
        _write_png(target, picture, provenance)
        return
    provenance_json = provenance if isinstance(provenance, str) else provenance()
    sixteen = picture.bit_depth == 16 and fmt in ("png", "tiff", "jxl")
    if picture.bit_depth == 16 and not sixteen:
        held = "studio writes 8-bit AVIF" if fmt == "avif" else f"{fmt.upper()} holds 8 bits per channel"
        warn(f"{shown}: {held}; the 16-bit depth of the input is reduced (PNG, TIFF and JPEG XL keep it)")
    if picture.alpha is not None and fmt == "jpg":
        warn(f"{shown}: JPEG has no alpha channel; transparency is flattened onto white")
    if fmt == "jxl":
        _write_jxl(target, picture, quality, provenance_json, shown)
    elif sixteen:
        _write_tiff16(target, picture, provenance_json, shown)
    else:
        _write_pillow(target, picture, fmt, quality, provenance_json)


def _planes(picture: Picture, peak: int) -> np.ndarray:
    """Quantise to integers: gray or RGB, with alpha when present."""
    rgb = np.clip(picture.rgb, 0.0, 1.0)
    if picture.grayscale:
        rgb = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    planes = rgb if picture.alpha is None else np.concatenate([rgb, np.clip(picture.alpha, 0, 1)[..., None]], axis=2)
    dtype = np.uint16 if peak == 65535 else np.uint8
    return np.round(planes * peak).astype(dtype)


def _write_pillow(target: Path, picture: Picture, fmt: str, quality: int, provenance_json: str) -> None:
    data = _planes(picture, 255)
    if fmt == "jpg" and data.shape[2] in (2, 4):
        colour, alpha = data[..., :-1].astype(np.float32), data[..., -1:].astype(np.float32) / 255.0
        data = np.round(colour * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[..., 0] if mode == "L" else data, mode=mode)
    options: dict[str, Any] = {}
    if picture.icc_profile:
        options["icc_profile"] = picture.icc_profile
    if picture.dpi and fmt not in ("webp", "avif"):  # Pillow writes JFIF density, PNG pHYs, TIFF resolution in inches
        options["dpi"] = picture.dpi
    if fmt == "jpg":
        if picture.exif:
            options["exif"] = picture.exif
        if picture.xmp:
            options["xmp"] = picture.xmp
        comment = COMMENT_PREFIX + provenance_json.encode("utf-8")
        image.save(target, format="JPEG", quality=quality, subsampling=0, comment=comment, **options)
        return
    resolution = exif_resolution(picture.dpi)
    in_exif = fmt in ("webp", "avif")  # these keep their print resolution only in EXIF
    options["exif"] = exif_with_provenance(picture.exif, provenance_json, resolution if in_exif else None)
    if in_exif and picture.xmp:
        options["xmp"] = picture.xmp
    if fmt == "webp":
        image.save(target, format="WEBP", lossless=True, quality=100, method=4, **options)
    elif fmt == "avif":  # 4:4:4: no halved colour resolution on restored detail
        image.save(target, format="AVIF", quality=quality, subsampling="4:4:4", **options)
    else:
        # uncompressed: libtiff's compressors cannot write the EXIF sub-IFD that carries provenance
        if picture.xmp:  # TIFF keeps XMP in IFD0 tag 700, which Pillow writes from the EXIF it is given
            options["exif"] = exif_with_provenance(picture.exif, provenance_json, {700: picture.xmp, **resolution})
        image.save(target, format="TIFF", compression=None, **options)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _provenance_chunk(provenance_json: str) -> bytes:
    """The iTXt chunk Pillow's `add_itxt(PROVENANCE_KEY, ..., zip=True)` writes: keyword, compressed JSON."""
    return _png_chunk(
        b"iTXt", PROVENANCE_KEY.encode() + b"\x00\x01\x00\x00\x00" + zlib.compress(provenance_json.encode())
    )


def _after_header(raw: bytes) -> int:
    """Where Pillow puts text chunks: after IHDR and the colour chunks that must precede them."""
    position = 8 + 4 + 4 + 13 + 4
    while raw[position + 4 : position + 8] in (b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"sBIT"):
        position += 12 + struct.unpack(">I", raw[position : position + 4])[0]
    return position


def _write_png(target: Path, picture: Picture, provenance: str | Callable[[], str]) -> None:
    """PNG at 8 bits (Pillow, level 6) or 16 (OpenCV); the provenance chunk is spliced in once the pixels
    are compressed, where Pillow itself would have written it (the bytes are the same)."""
    raw = _png16_pixels(picture, target) if picture.bit_depth == 16 else _png8_pixels(picture)
    provenance_json = provenance if isinstance(provenance, str) else provenance()
    at = _after_header(raw)
    target.write_bytes(raw[:at] + _provenance_chunk(provenance_json) + raw[at:])


def _png8_pixels(picture: Picture) -> bytes:
    data = _planes(picture, 255)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[..., 0] if mode == "L" else data, mode=mode)
    options: dict[str, Any] = {"compress_level": 6}
    if picture.icc_profile:
        options["icc_profile"] = picture.icc_profile
    if picture.dpi:
        options["dpi"] = picture.dpi
    if picture.xmp:
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", picture.xmp.decode("utf-8", errors="replace"))
        options["pnginfo"] = info
    if picture.exif:
        options["exif"] = picture.exif
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _png16_pixels(picture: Picture, target: Path) -> bytes:
    """OpenCV encodes the 16-bit pixels; the metadata chunks are spliced in after IHDR."""
    import cv2

    data = _planes(picture, 65535)
    if data.shape[2] >= 3:
        data = np.concatenate([data[..., 2::-1], data[..., 3:]], axis=2)
    ok, encoded = cv2.imencode(".png", data[..., 0] if data.shape[2] == 1 else data)
    if not ok:
        raise OutputError(f"{target}: 16-bit PNG encoding failed")
    raw = encoded.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4
    chunks = []
    if picture.icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(picture.icc_profile)))
    if picture.exif:
        exif = picture.exif[6:] if picture.exif.startswith(b"Exif\x00\x00") else picture.exif
        chunks.append(_png_chunk(b"eXIf", exif))
    if picture.xmp:
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + picture.xmp))
    if picture.dpi:  # pHYs: pixels per metre, unit 1 (metre)
        per_metre = [round(value / 0.0254) for value in picture.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    return raw[:ihdr_end] + b"".join(chunks) + raw[ihdr_end:]


def _write_tiff16(target: Path, picture: Picture, provenance_json: str, shown: str) -> None:
    import tifffile

    data = _planes(picture, 65535)
    extratags = []
    if picture.icc_profile:
        extratags.append((34675, "B", len(picture.icc_profile), picture.icc_profile, True))
    if picture.xmp:
        extratags.append((700, "B", len(picture.xmp), picture.xmp, True))
    photometric = "minisblack" if data.shape[2] <= 2 else "rgb"
    extrasamples = ("unassalpha",) if data.shape[2] in (2, 4) else None
    tifffile.imwrite(
        target,
        data[..., 0] if data.shape[2] == 1 else data,
        photometric=photometric,
        extrasamples=extrasamples,
        description=provenance_json,
        compression="zlib",
        extratags=extratags,
        metadata=None,
        resolution=picture.dpi,
        resolutionunit="INCH" if picture.dpi else None,
    )
    if picture.exif:
        warn(f"{shown}: EXIF is not carried into 16-bit TIFF; ICC and XMP are")


def _write_jxl(target: Path, picture: Picture, quality: int, provenance_json: str, shown: str) -> None:
    """libjxl's codestream in a container with EXIF (provenance, print resolution) and XMP boxes."""
    if picture.icc_profile and not _is_srgb(picture.icc_profile):
        raise OutputError(
            f"{shown}: JPEG XL output cannot carry this image's colour profile ({_profile_name(picture.icc_profile)}) "
            "and its colours would shift; use --format png, tiff, webp or avif"
        )
    data = _planes(picture, 65535 if picture.bit_depth == 16 else 255)
    exif = exif_with_provenance(picture.exif, provenance_json, exif_resolution(picture.dpi))
    target.write_bytes(jxl.with_metadata(jxl.encode(data, quality), exif, picture.xmp))


def _profile_name(icc: bytes) -> str:
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except (OSError, ImageCms.PyCMSError):
        return "unreadable"


def _is_srgb(icc: bytes) -> bool:
    """An sRGB profile (what a JPEG XL codestream without ICC states), by its description."""
    return "srgb" in _profile_name(icc).lower().replace(" ", "")
