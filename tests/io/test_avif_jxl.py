"""AVIF and JPEG XL outputs (and JPEG XL inputs): pixels, depth, alpha, ICC, EXIF, XMP, print resolution, provenance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from studio.errors import InputError, OutputError, PixelBudgetExceeded
from studio.io import Picture, read_image, read_provenance, write_image
from studio.io.jxl import encode, image_size, split

BUDGET = 10_000_000
PROVENANCE = {"studio_version": "test", "engine": "classical", "command": "studio restore x"}
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Studio portrait</dc:title></x:xmpmeta>'


def _camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Hasselblad"
    return exif.tobytes()


def _picture(rgb: np.ndarray, **fields: object) -> Picture:
    values = {"exif": _camera_exif(), "xmp": XMP, "dpi": (600.0, 600.0), **fields}
    return Picture(rgb=rgb.astype(np.float32), **values)  # type: ignore[arg-type]


def _assert_metadata_kept(back: Picture, out: Path) -> None:
    """The camera's EXIF, the XMP, the print resolution and studio's provenance all read back."""
    exif = Image.Exif()
    exif.load(back.exif)
    assert exif.get(0x010F) == "Hasselblad"
    assert back.xmp is not None and b"Studio portrait" in back.xmp
    assert back.dpi == (600.0, 600.0)
    assert read_provenance(out)["engine"] == "classical"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_jxl_at_quality_100_is_lossless_with_every_piece_of_metadata(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgb = astronaut[:96, :128].astype(np.float32) / 255.0
    alpha = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (96, 1))
    alpha = np.round(alpha * 255) / 255
    out = tmp_path / "out.jxl"
    write_image(out, _picture(rgb, alpha=alpha), "jxl", 100, PROVENANCE)
    assert out.read_bytes()[4:8] == b"JXL "  # the container, so the metadata boxes have a home
    back = read_image(out, BUDGET)
    assert back.bit_depth == 8 and back.size == (128, 96)
    assert np.array_equal(np.round(back.rgb * 255), astronaut[:96, :128])
    assert back.alpha is not None and np.abs(back.alpha - alpha).max() < 1e-6
    _assert_metadata_kept(back, out)


def test_jxl_keeps_sixteen_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 65536, size=(40, 56, 3)).astype(np.float32) / 65535.0
    out = tmp_path / "deep.jxl"
    write_image(out, _picture(levels, bit_depth=16), "jxl", 100, PROVENANCE)
    back = read_image(out, BUDGET)
    assert back.bit_depth == 16
    assert np.array_equal(np.round(back.rgb * 65535), np.round(levels * 65535))  # all 16 bits, exactly


def test_jxl_lossy_quality_is_smaller_and_close(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgb = astronaut[:128, :128].astype(np.float32) / 255.0
    lossless, lossy = tmp_path / "a.jxl", tmp_path / "b.jxl"
    write_image(lossless, _picture(rgb), "jxl", 100, PROVENANCE)
    write_image(lossy, _picture(rgb), "jxl", 95, PROVENANCE)
    assert lossy.stat().st_size < lossless.stat().st_size / 2
    assert _psnr(read_image(lossy, BUDGET).rgb, rgb) > 38.0
    with pytest.raises(OutputError, match="JPEG XL quality 80 would throw away"):
        write_image(tmp_path / "c.jxl", _picture(rgb), "jxl", 80, PROVENANCE)
    write_image(tmp_path / "c.jxl", _picture(rgb), "jxl", 80, PROVENANCE, force_jpeg=True)


def test_jxl_refuses_a_profile_it_cannot_carry_and_keeps_srgb(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgb = astronaut[:32, :32].astype(np.float32) / 255.0
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_image(tmp_path / "srgb.jxl", _picture(rgb, icc_profile=srgb), "jxl", 100, PROVENANCE)
    xyz = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()
    with pytest.raises(OutputError, match="cannot carry this image's colour profile"):
        write_image(tmp_path / "xyz.jxl", _picture(rgb, icc_profile=xyz), "jxl", 100, PROVENANCE)
    assert not list(tmp_path.glob("*xyz*"))  # nothing half-written


@pytest.mark.parametrize("size", [(16, 16), (31, 17), (640, 480), (1027, 513), (200, 100), (2050, 16)])
def test_jxl_size_is_read_from_the_header(size: tuple[int, int]) -> None:
    """The pixel budget is applied from the SizeHeader before libjxl allocates anything."""
    width, height = size
    codestream, _, _ = split(encode(np.zeros((height, width, 3), np.uint8), 100))
    assert image_size(codestream) == size


def test_bad_jxl_files_give_one_line(tmp_path: Path, astronaut: np.ndarray) -> None:
    good = tmp_path / "good.jxl"
    write_image(good, _picture(astronaut[:480, :480].astype(np.float32) / 255.0), "jxl", 100, PROVENANCE)
    with pytest.raises(PixelBudgetExceeded, match="pixel budget of 100,000"):
        read_image(good, 100_000)
    truncated = tmp_path / "truncated.jxl"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(truncated, BUDGET)
    impostor = tmp_path / "impostor.jxl"
    Image.fromarray(astronaut[:32, :32]).save(impostor, format="PNG")
    with pytest.raises(InputError, match="not a JPEG XL file"):
        read_image(impostor, BUDGET)


def test_avif_keeps_icc_exif_xmp_resolution_and_provenance(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgb = astronaut[:96, :96].astype(np.float32) / 255.0
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = tmp_path / "out.avif"
    write_image(out, _picture(rgb, icc_profile=srgb), "avif", 100, PROVENANCE)
    with Image.open(out) as written:
        assert written.info.get("icc_profile") == srgb
    back = read_image(out, BUDGET)
    assert np.abs(np.round(back.rgb * 255) - astronaut[:96, :96]).max() <= 3  # 4:4:4, near-lossless at 100
    _assert_metadata_kept(back, out)
    with pytest.raises(OutputError, match="AVIF quality 90"):
        write_image(tmp_path / "low.avif", _picture(rgb), "avif", 90, PROVENANCE)


def test_avif_from_sixteen_bits_says_the_depth_is_reduced(
    tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb = astronaut[:32, :32].astype(np.float32) / 255.0
    write_image(tmp_path / "deep.avif", _picture(rgb, bit_depth=16), "avif", 100, PROVENANCE)
    assert "16-bit depth of the input is reduced (PNG, TIFF and JPEG XL keep it)" in capsys.readouterr().err


def test_restore_writes_and_reads_jxl_and_avif_on_the_command_line(tmp_path: Path, photo: Path) -> None:
    """The user's path: --format from the output's extension, a JXL input restored again, `studio info` on both."""

    def studio(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "studio", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    jxl_out, avif_out = tmp_path / "once.jxl", tmp_path / "twice.avif"
    first = studio("restore", str(photo), "-o", str(jxl_out), "--engine", "classical", "--quality", "100")
    assert first.returncode == 0, first.stderr
    second = studio("restore", str(jxl_out), "-o", str(avif_out), "--engine", "classical", "--scale", "2")
    assert second.returncode == 0, second.stderr
    with Image.open(avif_out) as written:
        assert written.format == "AVIF"
    info = studio("info", str(jxl_out))
    assert info.returncode == 0 and "classical" in info.stdout, info.stdout + info.stderr
    refused = studio("restore", str(photo), "-o", str(tmp_path / "low.jxl"), "--quality", "50", "--dry-run")
    assert refused.returncode == 2 and "JPEG XL quality 50" in refused.stderr
