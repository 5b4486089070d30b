"""The fast path's output file: pixels equal to a bare ncnn extract, quality measured while the PNG is
compressed but still recorded, and PNG bytes the same as Pillow writing the provenance itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from studio.cli import app
from studio.io import Picture, read_provenance, write_image
from studio.io.metadata import PROVENANCE_KEY
from studio.runner.recipe import quality_report


def _bare_ncnn(source: Path) -> np.ndarray:
    """What a bare process computes: the bundled x4plus in ncnn, one whole-image extract, clipped."""
    import ncnn

    from studio import weights
    from studio.weights.ncnn import network_blobs

    param, binary = weights.offline_files(weights.find("realesrgan-x4plus"))
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    net.load_param(str(param))
    net.load_model(str(binary))
    blob_in, blob_out = network_blobs(param)
    rgb = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255.0
    planar = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    extractor = net.create_extractor()
    extractor.input(blob_in, ncnn.Mat(planar))
    _, out = extractor.extract(blob_out)
    return np.clip(np.array(out), 0, 1).transpose(1, 2, 0)


def test_restore_equals_bare_ncnn_and_records_quality(tmp_path: Path, astronaut: np.ndarray) -> None:
    """`studio restore --engine fast` on the bundled x4plus: max difference 0 against the bare extract;
    the quality report (measured in the background) is in the PNG's provenance, as measured alone."""
    pytest.importorskip("ncnn")
    source, output = tmp_path / "crop.png", tmp_path / "out.png"
    Image.fromarray(astronaut[200:224, 220:248]).save(source)
    args = ["restore", str(source), "-o", str(output), "--engine", "fast", "--model", "realesrgan-x4plus"]
    done = CliRunner().invoke(app, [*args, "--threads", "1"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    ours = np.asarray(Image.open(output).convert("RGB"))
    assert ours.shape == (96, 112, 3)
    bare = _bare_ncnn(source)
    assert np.abs(ours.astype(np.int16) - (bare * 255.0).round().astype(np.int16)).max() == 0
    recorded = read_provenance(output)["quality"]
    rgb = np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255.0
    assert {**quality_report(rgb, bare), "seconds": recorded["seconds"]} == recorded
    assert recorded["seconds"] > 0


def test_png_bytes_equal_pillow_writing_the_provenance(tmp_path: Path, astronaut: np.ndarray) -> None:
    """The provenance chunk spliced in after compression lands where Pillow puts it: the same bytes."""
    exif = Image.Exif()
    exif[0x0131] = "a camera"
    picture = Picture(
        rgb=astronaut[:40, :50].astype(np.float32) / 255.0,
        alpha=None,
        bit_depth=8,
        icc_profile=b"not a real profile, carried as bytes",
        exif=exif.tobytes(),
        xmp=b"<x:xmpmeta/>",
        dpi=(300.0, 300.0),
    )
    provenance = {"studio_version": "0", "engine": "fast", "quality": {"psnr_vs_lanczos_db": 30.0}}
    write_image(tmp_path / "ours.png", picture, "png", 95, lambda: provenance)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True), zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>")
    Image.fromarray(astronaut[:40, :50]).save(
        tmp_path / "pillow.png",
        format="PNG",
        pnginfo=info,
        compress_level=6,
        icc_profile=picture.icc_profile,
        dpi=picture.dpi,
        exif=picture.exif,
    )
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "pillow.png").read_bytes()
    assert read_provenance(tmp_path / "ours.png") == provenance


def test_sixteen_bit_png_keeps_provenance_after_the_pixels(tmp_path: Path, astronaut: np.ndarray) -> None:
    picture = Picture(rgb=astronaut[:16, :16].astype(np.float32) / 255.0, alpha=None, bit_depth=16)
    write_image(tmp_path / "deep.png", picture, "png", 95, lambda: {"studio_version": "0", "engine": "fast"})
    raw = (tmp_path / "deep.png").read_bytes()
    assert raw.index(b"iTXt" + PROVENANCE_KEY.encode()) < raw.index(b"IDAT")
    import cv2

    assert cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert read_provenance(tmp_path / "deep.png") == {"studio_version": "0", "engine": "fast"}


def test_default_fast_run_with_a_face_imports_no_torch(tmp_path: Path, astronaut: np.ndarray) -> None:
    """The default CPU path (bundled ncnn, faces found by the ONNX MobileNet for protection) never imports
    torch: its import cost ~2 s of CPU on a thread beside the ncnn extract (issue 25)."""
    pytest.importorskip("ncnn")
    source, output = tmp_path / "face.png", tmp_path / "out.png"
    Image.fromarray(astronaut[40:200, 150:310]).save(source)  # the astronaut's face, 160x160
    argv = ["studio", "restore", str(source), "-o", str(output), "--engine", "fast", "--scale", "2"]
    script = (
        f"import runpy, sys\nsys.argv = {argv!r}\n"
        "try:\n    runpy.run_module('studio', run_name='__main__')\n"
        "finally:\n    print('torch imported:', 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stdout
    provenance = read_provenance(output)
    assert provenance["face_protection"]["detector"] == "retinaface-mobilenet0.25"
    assert provenance["quality"]["regions"]["faces"]["share"] > 0.05
