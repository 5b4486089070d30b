"""Round trips through studio.io: orientation, alpha, 16-bit, ICC, EXIF, grayscale, CMYK, metadata, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from studio.errors import InputError, OutputError
from studio.io import (
    InputSet,
    Picture,
    bleed_colors,
    check_output_path,
    read_image,
    read_provenance,
    with_pixels,
    write_image,
)

BUDGET = 10_000_000
PROVENANCE = {"studio_version": "test", "engine": "classical", "command": "studio restore x"}


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([x / (width - 1), y / (height - 1), (x + y) / (width + height - 2)], axis=-1)


def test_exif_orientation_is_applied_and_reset(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(astronaut[:200, :300])  # 300 wide, 200 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "TestCam"
    image.save(path, exif=exif.tobytes(), quality=95)
    picture = read_image(path, BUDGET)
    assert picture.rgb.shape == (300, 200, 3)  # width and height swapped for display
    # the stored top-left pixel shows up at the top-right after a clockwise rotation
    np.testing.assert_allclose(picture.rgb[0, -1], astronaut[0, 0] / 255.0, atol=0.06)
    out = tmp_path / "out.png"
    write_image(out, picture, "png", 95, PROVENANCE)
    with Image.open(out) as written:
        assert written.size == (200, 300)
        assert written.getexif()[0x0112] == 1
        assert written.getexif()[0x010F] == "TestCam"


def test_sixteen_bit_png_round_trip_keeps_depth(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    deep = (_gradient(40, 600) * 65535).round().astype(np.uint16)
    cv2.imwrite(str(path), deep[..., ::-1])
    picture = read_image(path, BUDGET)
    assert picture.bit_depth == 16
    np.testing.assert_allclose(picture.rgb, deep / 65535.0, atol=1e-6)
    out = tmp_path / "out.png"
    write_image(out, picture, "png", 95, PROVENANCE)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[..., ::-1], deep)
    assert len(np.unique(back[..., 0])) > 256  # more levels than 8 bits can hold
    assert read_provenance(out)["engine"] == "classical"


def test_sixteen_bit_tiff_round_trip_keeps_depth_and_icc(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "deep.tif"
    deep = (_gradient(32, 400) * 65535).round().astype(np.uint16)
    tifffile.imwrite(path, deep, photometric="rgb")
    picture = read_image(path, BUDGET)
    assert picture.bit_depth == 16
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture = with_pixels(picture, picture.rgb, None)
    picture.icc_profile = icc
    out = tmp_path / "out.tif"
    write_image(out, picture, "tiff", 95, PROVENANCE)
    back = tifffile.imread(out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, deep)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].tags[34675].value == icc
    assert read_provenance(out)["command"] == "studio restore x"


def test_icc_profile_and_exif_survive_png_jpeg_webp(tmp_path: Path, astronaut: np.ndarray) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Hasselblad"
    source = tmp_path / "in.jpg"
    Image.fromarray(astronaut[:64, :64]).save(source, icc_profile=icc, exif=exif.tobytes(), quality=95)
    picture = read_image(source, BUDGET)
    assert picture.icc_profile == icc
    for fmt in ("png", "jpg", "webp", "tiff"):
        out = tmp_path / f"out.{fmt}"
        write_image(out, picture, fmt, 95, PROVENANCE)
        with Image.open(out) as written:
            assert written.info.get("icc_profile") == icc, fmt
            assert written.getexif().get(0x010F) == "Hasselblad", fmt
        assert read_provenance(out)["engine"] == "classical", fmt


def test_alpha_is_split_and_bleeding_prevents_dark_halo(tmp_path: Path) -> None:
    from studio.ops.resize import resize

    size = 64
    y, x = np.mgrid[0:size, 0:size]
    disc = ((x - 32) ** 2 + (y - 32) ** 2 < 20**2).astype(np.float32)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = (disc * 255).astype(np.uint8)  # red disc, transparent pixels hold black
    rgba[..., 3] = (disc * 255).astype(np.uint8)
    path = tmp_path / "sticker.png"
    Image.fromarray(rgba, "RGBA").save(path)
    picture = read_image(path, BUDGET)
    assert picture.alpha is not None and picture.alpha.shape == (size, size)
    bled = bleed_colors(picture.rgb, picture.alpha)
    up_rgb, up_alpha = resize(bled, 256, 256, "lanczos"), resize(picture.alpha, 256, 256, "bicubic")
    edge = (up_alpha > 0.05) & (up_alpha < 0.95)
    assert edge.sum() > 50
    assert up_rgb[..., 0][edge].min() > 0.95  # no dark fringe where the edge is partly transparent
    naive = resize(picture.rgb, 256, 256, "lanczos")
    assert naive[..., 0][edge].min() < 0.6  # the halo bleeding removes is real
    out = tmp_path / "out.png"
    write_image(out, with_pixels(picture, up_rgb, up_alpha), "png", 95, PROVENANCE)
    with Image.open(out) as written:
        assert written.mode == "RGBA"


def test_grayscale_stays_grayscale(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(astronaut[:64, :64]).convert("L").save(path)
    picture = read_image(path, BUDGET)
    assert picture.grayscale and picture.rgb.shape == (64, 64, 3)
    out = tmp_path / "out.png"
    write_image(out, picture, "png", 95, PROVENANCE)
    with Image.open(out) as written:
        assert written.mode == "L"


def test_cmyk_with_profile_and_palette_with_transparency(tmp_path: Path, astronaut: np.ndarray) -> None:
    cmyk = tmp_path / "print.jpg"
    Image.fromarray(astronaut[:64, :64]).convert("CMYK").save(cmyk, quality=95)
    picture = read_image(cmyk, BUDGET)
    assert picture.rgb.shape == (64, 64, 3) and not picture.grayscale
    assert any("CMYK" in note for note in picture.notes)

    palette = Image.fromarray(astronaut[:64, :64]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    picture = read_image(path, BUDGET)
    assert picture.alpha is not None


def test_animated_gif_uses_first_frame_with_a_note(tmp_path: Path, astronaut: np.ndarray) -> None:
    frames = [Image.fromarray(astronaut[:64, :64]), Image.fromarray(astronaut[64:128, :64])]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    picture = read_image(path, BUDGET)
    assert any("first" in note for note in picture.notes)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.png", None, "no such file"),
        ("empty.png", b"", "empty file"),
        ("text.png", b"this is not an image at all", "not an image"),
        ("notes.txt", b"hello", "unsupported file type"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_image(path, BUDGET)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_truncated_small_and_oversized_images(tmp_path: Path, astronaut: np.ndarray) -> None:
    whole = tmp_path / "whole.png"
    Image.fromarray(astronaut).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(cut, BUDGET)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(astronaut[:8, :8]).save(tiny)
    with pytest.raises(InputError, match="too small"):
        read_image(tiny, BUDGET)
    with pytest.raises(InputError, match="pixel budget"):
        read_image(whole, 100_000)


def test_outputs_never_overwrite_inputs_or_existing_files(tmp_path: Path, photo: Path) -> None:
    with pytest.raises(OutputError, match="never overwrites inputs"):
        check_output_path(photo, InputSet([photo]), overwrite=True)
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(existing, InputSet([photo]), overwrite=False)
    check_output_path(existing, InputSet([photo]), overwrite=True)


def test_low_quality_jpeg_is_refused_unless_forced(tmp_path: Path, photo: Path) -> None:
    picture = read_image(photo, BUDGET)
    with pytest.raises(OutputError, match="quality 80"):
        write_image(tmp_path / "low.jpg", picture, "jpg", 80, PROVENANCE)
    write_image(tmp_path / "low.jpg", picture, "jpg", 80, PROVENANCE, force_jpeg=True)
    assert (tmp_path / "low.jpg").stat().st_size > 0


def test_interrupted_write_leaves_no_file(tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.io.write

    picture = read_image(photo, BUDGET)

    def interrupted(target: Path, *args: object) -> None:
        target.write_bytes(b"half an image")
        raise KeyboardInterrupt

    monkeypatch.setattr(studio.io.write, "encode", interrupted)
    out = tmp_path / "out" / "result.png"
    with pytest.raises(KeyboardInterrupt):
        write_image(out, picture, "png", 95, PROVENANCE)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_provenance_chunk_is_json(tmp_path: Path, photo: Path) -> None:
    picture = read_image(photo, BUDGET)
    out = tmp_path / "out.png"
    write_image(out, picture, "png", 95, {**PROVENANCE, "seed": 7})
    with Image.open(out) as written:
        assert json.loads(written.info["studio"])["seed"] == 7
    again = read_image(out, BUDGET)
    assert again.provenance is not None and again.provenance["seed"] == 7


def test_picture_size_is_width_height() -> None:
    picture = Picture(rgb=np.zeros((20, 30, 3), np.float32))
    assert picture.size == (30, 20)


def test_a_16_bit_tiff_without_exif_gets_no_exif_warning(tmp_path: Path) -> None:
    """tifffile's own tags (a JSON description, Software, resolution) are not EXIF: nothing to warn about."""
    import tifffile
    from typer.testing import CliRunner

    from studio.cli import app

    pixels = (np.random.default_rng(0).random((24, 32, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb", resolution=(300, 300))
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "in.tif"), "--engine", "classical", "--format", "tiff"])
    assert result.exit_code == 0, result.output
    assert "EXIF" not in result.output
    assert read_image(tmp_path / "in_restored.tif", 10**8).bit_depth == 16
