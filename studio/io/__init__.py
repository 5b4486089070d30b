"""Read, validate and normalise input images; write outputs atomically with their metadata.

Everything that is not RGB pixels is split off on the way in (alpha, bit depth, ICC profile, EXIF,
XMP, grayscale-ness) and put back on the way out, so engines only ever see float32 RGB in [0, 1].
Pillow does the work, except for 16-bit colour, which Pillow cannot hold: OpenCV reads and writes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from studio.errors import InputError, OutputError, PixelBudgetExceeded
from studio.messages import warn

SUPPORTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif")
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
MIN_SIDE = 16
LARGE_SIDE_WARNING = 10_000
PROVENANCE_KEY = "studio"  # PNG iTXt keyword; elsewhere the JSON sits in EXIF UserComment with this prefix
_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112
_USER_COMMENT_PREFIX = b"UNICODE\x00" + b"studio:"
_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 282, 283, 296  # TIFF/EXIF tags; unit 2 = inch, 3 = cm
_COMMENT_PREFIX = b"studio:"  # JPEG COM segment: keeps provenance out of EXIF's 64 KB APP1 budget


@dataclass
class Picture:
    """Decoded pixels plus everything that must survive the round trip untouched."""

    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], orientation applied
    alpha: np.ndarray | None = None  # float32 (H, W) straight alpha, or None
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already reset to 1
    xmp: bytes | None = None
    source_format: str = ""
    provenance: dict[str, Any] | None = None  # studio metadata found in the file, if it is an earlier output
    notes: list[str] = field(default_factory=list)
    jpeg_quality: int | None = None  # JPEG inputs: the IJG quality their quantisation tables match best
    dpi: tuple[float, float] | None = None  # print resolution (pixels per inch), when the file states one

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow and people say it."""
        return self.rgb.shape[1], self.rgb.shape[0]


# ---------------------------------------------------------------------------------------------- reading


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def read_image(path: Path, max_pixels: int) -> Picture:
    """Open and validate one input. Every failure is an InputError with one line naming the file."""
    _check_file(path)
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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder with no supported images")
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
    dpi = _dpi(image)
    exif_obj = image.getexif()
    orientation = int(exif_obj.get(_ORIENTATION, 1) or 1)
    provenance = _provenance_from(image, exif_obj)
    exif = _exif_without_orientation(exif_obj, image.format)
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp:  # the pixels are turned upright, so XMP must stop asking readers to rotate them again
        xmp = re.sub(rb'tiff:Orientation(="|>)\d', rb"tiff:Orientation\g<1>1", xmp)

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


_IJG_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ]
)
_IJG_CHROMA = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66] + [99] * 51)
"""The example tables of the JPEG standard (Annex K) that libjpeg scales by quality; order is irrelevant
here because tables are compared sorted."""


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's quality scaling of a base table (jpeg_quality_scaling + baseline clamp)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def jpeg_quality(tables: dict[int, Any]) -> int:
    """The IJG quality (1-100) whose tables are nearest to a file's (Pillow's `image.quantization`).

    Exact for files written by libjpeg-based encoders (Pillow, most cameras' software); for other
    encoders it is the nearest IJG equivalent, which is what choosing an artefact-removal model needs.
    """
    found = [np.sort(np.asarray(tables[key], dtype=np.int64)) for key in sorted(tables)[:2]]
    bases = [np.sort(_IJG_LUMA), np.sort(_IJG_CHROMA)][: len(found)]

    def distance(quality: int) -> int:
        return sum(int(np.abs(_ijg_table(base, quality) - table).sum()) for base, table in zip(bases, found))

    return min(range(1, 101), key=distance)


def _dpi(image: Image.Image) -> tuple[float, float] | None:
    """Pixels per inch as the file states them (JFIF density, PNG pHYs, TIFF resolution), or None."""
    dpi = image.info.get("dpi")
    if not dpi:
        exif = image.getexif()
        x, y, unit = exif.get(_X_RESOLUTION), exif.get(_Y_RESOLUTION), exif.get(_RESOLUTION_UNIT, 2)
        per_inch = {2: 1.0, 3: 2.54}.get(int(unit or 2))
        dpi = (float(x), float(y)) if x and y and per_inch else None
        dpi = None if dpi is None else (dpi[0] * per_inch, dpi[1] * per_inch)
    if not dpi or min(float(dpi[0]), float(dpi[1])) <= 1.0:  # 1/1 "no unit" and 0 mean: not stated
        return None
    return round(float(dpi[0]), 1), round(float(dpi[1]), 1)  # PNG stores per metre: 600 dpi reads 599.999


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


# TIFF's IFD0 doubles as its EXIF: these tags describe the source file's pixel layout, not the photo,
# and would make the output's EXIF lie (wrong size, CMYK, strip offsets).
_TIFF_LAYOUT_TAGS = (
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    266,
    273,
    277,
    278,
    279,
    284,
    292,
    293,
    317,
    320,
    322,
    323,
    324,
    325,
    338,
    339,
    340,
    341,
    530,
    531,
    532,
    700,
    34377,
    34675,
)


def _exif_without_orientation(exif: Image.Exif, source_format: str | None) -> bytes | None:
    if source_format == "TIFF":
        for tag in _TIFF_LAYOUT_TAGS:
            exif.pop(tag, None)
    if not len(exif) and not exif.get_ifd(_EXIF_IFD):
        return None
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    ifd = exif.get_ifd(_EXIF_IFD)
    comment = ifd.get(_USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(_USER_COMMENT_PREFIX):
        del ifd[_USER_COMMENT]  # an earlier run's provenance; this run writes its own
    return exif.tobytes()


def _provenance_from(image: Image.Image, exif: Image.Exif) -> dict[str, Any] | None:
    text = image.info.get(PROVENANCE_KEY)
    comment = image.info.get("comment")
    if text is None and isinstance(comment, bytes) and comment.startswith(_COMMENT_PREFIX):
        text = comment[len(_COMMENT_PREFIX) :].decode("utf-8", errors="replace")
    if text is None:
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if isinstance(comment, bytes) and comment.startswith(_USER_COMMENT_PREFIX):
            text = comment[len(_USER_COMMENT_PREFIX) :].decode("utf-16-le", errors="replace")
    if text is None and image.format == "TIFF":
        description = image.tag_v2.get(270) if hasattr(image, "tag_v2") else None
        text = description if isinstance(description, str) else None
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "studio_version" in data else None


def read_provenance(path: Path) -> dict[str, Any] | None:
    """The studio metadata an output carries (for `studio info`), or None."""
    _check_file(path)
    try:
        with Image.open(path) as image:
            return _provenance_from(image, image.getexif())
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read metadata ({_short(exc)})") from None


# ---------------------------------------------------------------------------------------------- alpha


def bleed_colors(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill the colour of transparent pixels from their opaque neighbours (push-pull).

    Transparent pixels often hold black (or garbage); upscalers and resamplers mix that colour into
    the visible edge, which shows as a dark halo once alpha is re-attached. Pixels with any coverage
    keep their colour.
    """
    weights = [alpha.astype(np.float32)]
    colours = [rgb * weights[0][..., None]]
    while min(weights[-1].shape) > 1:
        w, c = weights[-1], colours[-1]
        h2, w2 = (w.shape[0] + 1) // 2, (w.shape[1] + 1) // 2
        wp = np.pad(w, ((0, h2 * 2 - w.shape[0]), (0, w2 * 2 - w.shape[1])))
        cp = np.pad(c, ((0, h2 * 2 - c.shape[0]), (0, w2 * 2 - c.shape[1]), (0, 0)))
        weights.append(wp.reshape(h2, 2, w2, 2).sum(axis=(1, 3)))
        colours.append(cp.reshape(h2, 2, w2, 2, 3).sum(axis=(1, 3)))
    filled = colours[-1] / np.maximum(weights[-1], 1e-8)[..., None]
    for w, c in zip(reversed(weights[:-1]), reversed(colours[:-1]), strict=True):
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: w.shape[0], : w.shape[1]]
        coverage = np.clip(w, 0.0, 1.0)[..., None]
        mean = c / np.maximum(w, 1e-8)[..., None]
        filled = np.where(w[..., None] > 1e-8, coverage * mean + (1 - coverage) * up, up)
    return np.where(alpha[..., None] > 0, rgb, filled).astype(np.float32)


# ---------------------------------------------------------------------------------------------- writing


def output_format(path: Path, requested: str | None) -> str:
    """The format to write: the explicit one, else from the output's extension, else PNG."""
    if requested:
        return requested
    suffix = path.suffix.lower()
    for name, ext in FORMAT_EXTENSIONS.items():
        if suffix == ext or (name == "jpg" and suffix == ".jpeg") or (name == "tiff" and suffix == ".tiff"):
            return name
    return "png"


class InputSet:
    """The batch's inputs, resolved once, so each output is checked against all of them cheaply."""

    def __init__(self, inputs: list[Path]) -> None:
        self.paths = {path.resolve() for path in inputs}
        self.files = {_file_id(path) for path in inputs if path.exists()}

    def __contains__(self, path: Path) -> bool:
        return path.resolve() in self.paths or (path.exists() and _file_id(path) in self.files)


def _file_id(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def check_output_path(output: Path, inputs: InputSet, overwrite: bool) -> None:
    """Refuse to clobber an input (ever), an existing output (unless --overwrite), or a folder."""
    if output in inputs:
        raise OutputError(f"{output}: is an input file; studio never overwrites inputs (choose another path)")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; give a file name")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")


def jpeg_quality_problem(fmt: str, quality: int, force_jpeg: bool) -> str | None:
    """Why a JPEG quality is refused (it would lose the restored detail), or None when it is fine."""
    if fmt == "jpg" and quality < 95 and not force_jpeg:
        return (
            f"JPEG quality {quality} would throw away the restored detail; use --quality 95 or more, "
            "PNG/WebP/TIFF, or --force-jpeg"
        )
    return None


def write_image(
    path: Path,
    picture: Picture,
    fmt: str,
    quality: int,
    provenance: dict[str, Any],
    force_jpeg: bool = False,
) -> None:
    """Write atomically: a temp file in the target folder, then rename. No partial file survives."""
    if problem := jpeg_quality_problem(fmt, quality, force_jpeg):
        raise OutputError(f"{path}: {problem}")
    if fmt == "jpg":
        warn(f"{path.name}: JPEG re-compresses the result; PNG, lossless WebP or TIFF keep every restored detail")
    with _atomic(path) as temp:
        _encode(temp, picture, fmt, quality, json.dumps(provenance, sort_keys=True, default=str), path.name)


def write_text_atomic(path: Path, text: str) -> None:
    """Reports and sidecars get the same all-or-nothing write as images."""
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    with _atomic(path) as temp:
        temp.write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""What a plain open() would give; mkstemp alone gives 0600."""


def make_folder(folder: Path) -> None:
    """mkdir -p, with one clear line when a file stands where a folder must go."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{folder}: cannot create this folder, a file of that name is in the way") from None
    except PermissionError:
        raise OutputError(f"{folder}: no permission to create or write this folder") from None


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    make_folder(path.parent)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part" + path.suffix, dir=path.parent)
    except PermissionError:
        raise OutputError(f"{path.parent}: no permission to write here") from None
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave a partial output behind
        temp.unlink(missing_ok=True)
        raise


def _encode(target: Path, picture: Picture, fmt: str, quality: int, provenance_json: str, shown: str) -> None:
    """Encode into `target` (a temporary file); warnings name `shown`, the output's real name."""
    sixteen = picture.bit_depth == 16 and fmt in ("png", "tiff")
    if picture.bit_depth == 16 and not sixteen:
        warn(f"{shown}: {fmt.upper()} holds 8 bits per channel; the 16-bit depth of the input is reduced")
    if picture.alpha is not None and fmt == "jpg":
        warn(f"{shown}: JPEG has no alpha channel; transparency is flattened onto white")
    if sixteen and fmt == "png":
        _write_png16(target, picture, provenance_json)
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
    from PIL import PngImagePlugin

    data = _planes(picture, 255)
    if fmt == "jpg" and data.shape[2] in (2, 4):
        colour, alpha = data[..., :-1].astype(np.float32), data[..., -1:].astype(np.float32) / 255.0
        data = np.round(colour * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[..., 0] if mode == "L" else data, mode=mode)
    options: dict[str, Any] = {}
    if picture.icc_profile:
        options["icc_profile"] = picture.icc_profile
    if picture.dpi and fmt != "webp":  # Pillow writes JFIF density, PNG pHYs, TIFF resolution in inches
        options["dpi"] = picture.dpi
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PROVENANCE_KEY, provenance_json, zip=True)
        if picture.xmp:
            info.add_itxt("XML:com.adobe.xmp", picture.xmp.decode("utf-8", errors="replace"))
        options.update(pnginfo=info, compress_level=6)
        if picture.exif:
            options["exif"] = picture.exif
        image.save(target, format="PNG", **options)
        return
    if fmt == "jpg":
        if picture.exif:
            options["exif"] = picture.exif
        if picture.xmp:
            options["xmp"] = picture.xmp
        comment = _COMMENT_PREFIX + provenance_json.encode("utf-8")
        image.save(target, format="JPEG", quality=quality, subsampling=0, comment=comment, **options)
        return
    resolution = _exif_resolution(picture.dpi)
    options["exif"] = _exif_with_provenance(picture.exif, provenance_json, resolution if fmt == "webp" else None)
    if fmt == "webp":
        if picture.xmp:
            options["xmp"] = picture.xmp
        image.save(target, format="WEBP", lossless=True, quality=100, method=4, **options)
    else:
        # uncompressed: libtiff's compressors cannot write the EXIF sub-IFD that carries provenance
        if picture.xmp:  # TIFF keeps XMP in IFD0 tag 700, which Pillow writes from the EXIF it is given
            options["exif"] = _exif_with_provenance(picture.exif, provenance_json, {700: picture.xmp, **resolution})
        image.save(target, format="TIFF", compression=None, **options)


def _exif_with_provenance(exif_bytes: bytes | None, provenance_json: str, ifd0: dict[int, Any] | None = None) -> bytes:
    exif = Image.Exif()
    if exif_bytes:
        exif.load(exif_bytes)
    exif.update(ifd0 or {})
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _USER_COMMENT_PREFIX + provenance_json.encode("utf-16-le")
    return exif.tobytes()


def _exif_resolution(dpi: tuple[float, float] | None) -> dict[int, Any]:
    """EXIF resolution tags (WebP keeps its print resolution only there)."""
    if not dpi:
        return {}
    from PIL.TiffImagePlugin import IFDRational

    return {_X_RESOLUTION: IFDRational(dpi[0]), _Y_RESOLUTION: IFDRational(dpi[1]), _RESOLUTION_UNIT: 2}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png16(target: Path, picture: Picture, provenance_json: str) -> None:
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
    text = PROVENANCE_KEY.encode() + b"\x00\x01\x00\x00\x00" + zlib.compress(provenance_json.encode())
    chunks = [_png_chunk(b"iTXt", text)]
    if picture.icc_profile:
        chunks.insert(0, _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(picture.icc_profile)))
    if picture.exif:
        exif = picture.exif[6:] if picture.exif.startswith(b"Exif\x00\x00") else picture.exif
        chunks.append(_png_chunk(b"eXIf", exif))
    if picture.xmp:
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + picture.xmp))
    if picture.dpi:  # pHYs: pixels per metre, unit 1 (metre)
        per_metre = [round(value / 0.0254) for value in picture.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    target.write_bytes(raw[:ihdr_end] + b"".join(chunks) + raw[ihdr_end:])


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


def with_pixels(picture: Picture, rgb: np.ndarray, alpha: np.ndarray | None, dpi: float | None = None) -> Picture:
    """The same picture (depth, profile, metadata) with restored pixels.

    The print resolution grows with the pixels, so the print size stays the same, unless `dpi` sets it.
    """
    resolution = (float(dpi), float(dpi)) if dpi else picture.dpi
    if resolution and not dpi:
        factor_x, factor_y = rgb.shape[1] / picture.rgb.shape[1], rgb.shape[0] / picture.rgb.shape[0]
        resolution = (round(resolution[0] * factor_x, 3), round(resolution[1] * factor_y, 3))
    return replace(picture, rgb=rgb, alpha=alpha, provenance=None, notes=[], dpi=resolution)


def print_size(size: tuple[int, int], dpi: tuple[float, float] | None) -> dict[str, Any]:
    """Physical size in inches and cm at the stored resolution (if any) and at 300 dpi, for people."""

    def at(x: float, y: float) -> dict[str, Any]:
        inches = [round(size[0] / x, 2), round(size[1] / y, 2)]
        return {"dpi": [x, y], "inches": inches, "cm": [round(v * 2.54, 1) for v in inches]}

    return {"stored": at(*dpi) if dpi else None, "at_300_dpi": at(300.0, 300.0)}


def write_png_text(path: Path, rgb: np.ndarray, text: dict[str, str]) -> None:
    """An 8-bit RGB PNG with plain text entries (not studio provenance), written atomically.

    For files studio makes that are not restorations: test pairs, comparison sheets.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    pixels = np.clip(np.round(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    with _atomic(path) as temp:
        Image.fromarray(pixels).save(temp, format="PNG", pnginfo=info)


def image_files(folder: Path) -> list[Path]:
    """Supported images under `folder`, recursively and sorted, skipping hidden files and folders."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and is_supported(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
