"""Open, validate and decode one input into a `Picture`; every failure is one line naming the file.

Pillow does the work, except for 16-bit colour, which Pillow silently reduces to 8 bits: OpenCV
reads that; and JPEG XL, which Pillow cannot read: libjxl does (`studio.io.jxl`). Any colour mode
becomes float32 RGB in [0, 1] with the orientation applied.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from studio.errors import InputError, PixelBudgetExceeded
from studio.io import jxl
from studio.io.formats import SUPPORTED_EXTENSIONS, VIDEO_EXTENSIONS, is_supported
from studio.io.jpeg_quality import jpeg_quality
from studio.io.metadata import (
    ORIENTATION,
    exif_dpi,
    exif_without_orientation,
    provenance_from,
    provenance_in_exif,
    stated_dpi,
    upright_xmp,
    upright_xmp_packet,
)
from studio.io.picture import Picture

MIN_SIDE = 16
LARGE_SIDE_WARNING = 10_000


def read_image(path: Path, max_pixels: int) -> Picture:
    """Open and validate one input. Every failure is an InputError with one line naming the file."""
    _check_file(path)
    if path.suffix.lower() == ".jxl":
        return _read_jxl(path, max_pixels)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
            with image:
                return _decode(path, image, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PixelBudgetExceeded(
            f"{path}: larger than the pixel budget of {max_pixels:,} pixels; "
            "raise it with --max-pixels if you trust the file"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format studio cannot read") from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({_short(exc)})") from None


def check_output_budget(path: Path, size: tuple[int, int], scale: float, max_output_pixels: int) -> None:
    """The output (input x scale) within its pixel budget, checked before any work: one line otherwise."""
    width, height = size
    out_width, out_height = max(1, round(width * scale)), max(1, round(height * scale))
    if out_width * out_height > max_output_pixels:
        raise PixelBudgetExceeded(
            f"{path}: {width}x{height} at scale {scale:g} makes a {out_width}x{out_height} output "
            f"({out_width * out_height:,} pixels), over the output budget of {max_output_pixels:,} pixels; "
            "lower --scale (or raise --max-output-pixels)"
        )


def read_provenance(path: Path) -> dict[str, Any] | None:
    """The studio metadata an output carries (for `studio info`), or None."""
    _check_file(path)
    if path.suffix.lower() == ".jxl":
        return _read_jxl(path, max_pixels=2**62, pixels=False).provenance
    try:
        with Image.open(path) as image:
            return provenance_from(image, image.getexif())
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read metadata ({_short(exc)})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder with no supported images")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise InputError(f"{path}: is a video; restore it with `studio video {path}`")
    if not is_supported(path):
        raise InputError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}'; studio reads "
            + ", ".join(ext.lstrip(".") for ext in SUPPORTED_EXTENSIONS)
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _decode(path: Path, image: Image.Image, max_pixels: int) -> Picture:
    width, height = image.size
    sixteen_bit_colour = _is_16bit_colour(image)  # before anything loads the pixels and drops the tile info
    if width * height > max_pixels:
        raise Image.DecompressionBombError("over budget")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{path}: {width}x{height} is too small; studio needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    notes: list[str] = []
    if max(width, height) > LARGE_SIDE_WARNING:
        notes.append(f"{width}x{height} is very large; expect long run times and use tiling")
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"has {image.n_frames} frames; only the first is restored")
    image.seek(0)
    icc = image.info.get("icc_profile") or None
    dpi = stated_dpi(image)
    exif_obj = image.getexif()
    orientation = int(exif_obj.get(ORIENTATION, 1) or 1)
    provenance = provenance_from(image, exif_obj)
    exif = exif_without_orientation(exif_obj, image.format)
    xmp = upright_xmp(image)

    if sixteen_bit_colour:
        rgb, alpha = _read_16bit_colour(path)
        bit_depth, grayscale = 16, False
    else:
        image.load()
        rgb, alpha, bit_depth, grayscale, icc, note = _to_float(image, icc)
        if note:
            notes.append(note)
    rgb = _orient(rgb, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
        if float(alpha.min()) >= 1.0:
            alpha = None  # an opaque alpha channel is just overhead
    return Picture(
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=bit_depth,
        grayscale=grayscale,
        icc_profile=icc,
        exif=exif,
        xmp=xmp,
        source_format=(image.format or path.suffix.lstrip(".")).lower(),
        provenance=provenance,
        notes=notes,
        jpeg_quality=jpeg_quality(image.quantization) if getattr(image, "quantization", None) else None,
        dpi=dpi,
    )


def _read_jxl(path: Path, max_pixels: int, pixels: bool = True) -> Picture:
    """A JPEG XL file: size checked from its header before libjxl decodes; EXIF and XMP from its boxes."""
    data = path.read_bytes()
    if not jxl.is_jxl(data[:16]):
        raise InputError(f"{path}: not a JPEG XL file, though named .jxl")
    try:
        codestream, exif_bytes, xmp = jxl.split(data)
        width, height = jxl.image_size(codestream)
    except (ValueError, KeyError, struct.error) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({_short(exc)})") from None
    if width * height > max_pixels:
        raise PixelBudgetExceeded(
            f"{path}: larger than the pixel budget of {max_pixels:,} pixels; "
            "raise it with --max-pixels if you trust the file"
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{path}: {width}x{height} is too small; studio needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    exif = Image.Exif()
    if exif_bytes:
        exif.load(exif_bytes)
    provenance = provenance_in_exif(exif)  # before the EXIF to write back drops it
    planes = np.zeros((1, 1, 3), np.uint8)
    if pixels:
        try:
            planes = jxl.decode(data)
        except RuntimeError as exc:
            raise InputError(f"{path}: truncated or corrupt image ({_short(exc)})") from None
    peak = 65535.0 if planes.dtype == np.uint16 else 255.0
    planes = (planes.astype(np.float32) / peak).reshape(planes.shape[0], planes.shape[1], -1)
    colour = planes[..., :1].repeat(3, axis=2) if planes.shape[2] in (1, 2) else planes[..., :3]
    alpha = planes[..., -1] if planes.shape[2] in (2, 4) and float(planes[..., -1].min()) < 1.0 else None
    return Picture(
        rgb=np.ascontiguousarray(colour),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=16 if peak > 255 else 8,
        grayscale=planes.shape[2] in (1, 2),
        exif=exif_without_orientation(exif, "JXL"),
        xmp=upright_xmp_packet(xmp),
        source_format="jxl",
        provenance=provenance,
        dpi=exif_dpi(exif),
    )


def _is_16bit_colour(image: Image.Image) -> bool:
    """Pillow silently reduces 48/64-bit colour to 8 bits; spot those files so OpenCV reads them."""
    if image.format == "PNG" and image.mode in ("RGB", "RGBA"):
        return bool(image.tile) and ";16" in str(image.tile[0][3])
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA"):
        bits = image.tag_v2.get(258)
        return isinstance(bits, tuple) and bits[0] == 16
    return False


def _read_16bit_colour(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        raise InputError(f"{path}: 16-bit image could not be decoded")
    data = data.astype(np.float32) / 65535.0
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2), None
    rgb = data[..., 2::-1] if data.shape[2] >= 3 else np.repeat(data[..., :1], 3, axis=2)
    alpha = data[..., 3] if data.shape[2] == 4 else None
    return rgb, alpha


def _to_float(
    image: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, int, bool, bytes | None, str | None]:
    """Any Pillow mode -> (rgb, alpha, bit depth, grayscale, icc to write back, note)."""
    mode = image.mode
    note = None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N") or (mode == "I" and image.format in ("PNG", "TIFF")):
        plane = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(plane, 0, 1)[..., None], 3, axis=2), None, 16, True, icc, None
    if mode == "F":
        plane = np.asarray(image, dtype=np.float32)
        peak = float(plane.max()) if plane.size else 1.0
        plane = plane / peak if peak > 1.0 else plane
        return np.repeat(np.clip(plane, 0, 1)[..., None], 3, axis=2), None, 16, True, icc, None
    if mode == "CMYK":
        if icc:
            srgb = ImageCms.createProfile("sRGB")
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            icc = ImageCms.ImageCmsProfile(srgb).tobytes()
        else:
            image = image.convert("RGB")
            note = "CMYK without a colour profile; converted naively to RGB"
        return _rgb8(image), None, 8, False, icc, note
    grayscale = mode in ("1", "L", "LA", "La", "I")
    if mode in ("P", "PA"):
        has_alpha = "transparency" in image.info or mode == "PA"
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "La", "RGBa", "PA"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        try:
            image = image.convert("RGB")
        except ValueError:
            raise InputError(f"{image.filename}: unsupported colour mode {mode}") from None
    alpha = None
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        image = image.convert("RGB")
    return _rgb8(image), alpha, 8, grayscale, icc, note


def _rgb8(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W[, C]) array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    return ops[orientation](array) if orientation in ops else array
