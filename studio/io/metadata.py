"""What a file says besides its pixels: EXIF, XMP, print resolution, and studio's own provenance.

Read side: orientation is applied to the pixels and reset in EXIF/XMP, TIFF layout tags are dropped
(they describe the source file, not the photo), and an earlier run's provenance is recognised. Write
side: provenance goes where each format keeps text (PNG iTXt, JPEG COM, EXIF UserComment elsewhere).
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

PROVENANCE_KEY = "studio"  # PNG iTXt keyword; elsewhere the JSON sits in EXIF UserComment with this prefix
ORIENTATION = 0x0112
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769
USER_COMMENT_PREFIX = b"UNICODE\x00" + b"studio:"
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 282, 283, 296  # TIFF/EXIF tags; unit 2 = inch, 3 = cm
COMMENT_PREFIX = b"studio:"  # JPEG COM segment: keeps provenance out of EXIF's 64 KB APP1 budget

# TIFF's IFD0 doubles as its EXIF: these tags describe the source file's pixel layout, not the photo,
# and would make the output's EXIF lie (wrong size, CMYK, strip offsets).
# fmt: off
_TIFF_LAYOUT_TAGS = (
    254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 292, 293, 317, 320, 322, 323, 324,
    325, 338, 339, 340, 341, 530, 531, 532, 700, 34377, 34675,
)
# fmt: on
_TIFF_WRITER_TAGS = (X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT, 305)
"""TIFF tags about the file, not the photo: resolution (carried as the output's dpi instead) and Software."""
IMAGE_DESCRIPTION = 270


def stated_dpi(image: Image.Image) -> tuple[float, float] | None:
    """Pixels per inch as the file states them (JFIF density, PNG pHYs, TIFF resolution), or None."""
    return _plausible(image.info.get("dpi") or exif_dpi(image.getexif()))


def exif_dpi(exif: Image.Exif) -> tuple[float, float] | None:
    """Pixels per inch from EXIF's resolution tags (WebP, AVIF and JPEG XL keep it only there), or None."""
    x, y, unit = exif.get(X_RESOLUTION), exif.get(Y_RESOLUTION), exif.get(RESOLUTION_UNIT, 2)
    per_inch = {2: 1.0, 3: 2.54}.get(int(unit or 2))
    return _plausible((float(x) * per_inch, float(y) * per_inch) if x and y and per_inch else None)


def _plausible(dpi: tuple[float, float] | None) -> tuple[float, float] | None:
    if not dpi or min(float(dpi[0]), float(dpi[1])) <= 1.0:  # 1/1 "no unit" and 0 mean: not stated
        return None
    return round(float(dpi[0]), 1), round(float(dpi[1]), 1)  # PNG stores per metre: 600 dpi reads 599.999


def upright_xmp(image: Image.Image) -> bytes | None:
    """The file's XMP packet; the pixels are turned upright, so it stops asking readers to rotate them."""
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    return upright_xmp_packet(xmp.encode("utf-8") if isinstance(xmp, str) else xmp)


def upright_xmp_packet(xmp: bytes | None) -> bytes | None:
    """An XMP packet that no longer asks readers to rotate the (already upright) pixels."""
    return re.sub(rb'tiff:Orientation(="|>)\d', rb"tiff:Orientation\g<1>1", xmp) if xmp else None


def exif_without_orientation(exif: Image.Exif, source_format: str | None) -> bytes | None:
    """The EXIF to write back: orientation 1, no TIFF layout tags, no earlier run's provenance."""
    if source_format == "TIFF":
        for tag in (*_TIFF_LAYOUT_TAGS, *_TIFF_WRITER_TAGS):
            exif.pop(tag, None)
        if str(exif.get(IMAGE_DESCRIPTION, "")).lstrip().startswith("{"):
            del exif[IMAGE_DESCRIPTION]  # JSON a program wrote (tifffile's shape, studio's provenance): no caption
    if not len(exif) and not exif.get_ifd(EXIF_IFD):
        return None
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    ifd = exif.get_ifd(EXIF_IFD)
    comment = ifd.get(USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(USER_COMMENT_PREFIX):
        del ifd[USER_COMMENT]  # an earlier run's provenance; this run writes its own
    return exif.tobytes()


def provenance_from(image: Image.Image, exif: Image.Exif) -> dict[str, Any] | None:
    """The provenance an earlier studio run wrote into this file, wherever its format keeps it, or None."""
    text = image.info.get(PROVENANCE_KEY)
    comment = image.info.get("comment")
    if text is None and isinstance(comment, bytes) and comment.startswith(COMMENT_PREFIX):
        text = comment[len(COMMENT_PREFIX) :].decode("utf-8", errors="replace")
    if text is None and image.format == "TIFF" and not _exif_comment(exif):
        description = image.tag_v2.get(270) if hasattr(image, "tag_v2") else None
        text = description if isinstance(description, str) else None
    return _studio_json(text) if text is not None else provenance_in_exif(exif)


def provenance_in_exif(exif: Image.Exif) -> dict[str, Any] | None:
    """The provenance in EXIF's UserComment (WebP, AVIF, JPEG XL, 8-bit TIFF), or None."""
    text = _exif_comment(exif)
    return _studio_json(text) if text is not None else None


def _exif_comment(exif: Image.Exif) -> str | None:
    comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(USER_COMMENT_PREFIX):
        return comment[len(USER_COMMENT_PREFIX) :].decode("utf-16-le", errors="replace")
    return None


def _studio_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "studio_version" in data else None


def exif_with_provenance(exif_bytes: bytes | None, provenance_json: str, ifd0: dict[int, Any] | None = None) -> bytes:
    """EXIF carrying the provenance in UserComment (WebP, 8-bit TIFF), plus extra IFD0 tags."""
    exif = Image.Exif()
    if exif_bytes:
        exif.load(exif_bytes)
    exif.update(ifd0 or {})
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = USER_COMMENT_PREFIX + provenance_json.encode("utf-16-le")
    return exif.tobytes()


def exif_resolution(dpi: tuple[float, float] | None) -> dict[int, Any]:
    """EXIF resolution tags (WebP keeps its print resolution only there)."""
    if not dpi:
        return {}
    return {X_RESOLUTION: IFDRational(dpi[0]), Y_RESOLUTION: IFDRational(dpi[1]), RESOLUTION_UNIT: 2}
