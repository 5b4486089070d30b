"""Face detection with five landmarks: RetinaFace (facexlib) from local weights, or a bundled fallback.

RetinaFace ResNet50 is what GFPGAN and CodeFormer were used with; its weights are a registry entry
(`retinaface-resnet50`) and are never downloaded here. Without them, scikit-image's bundled LBP
frontal-face cascade finds the face box, the eyes are located as the darkest spots in the eye
regions, and nose and mouth are placed where the FFHQ template puts them relative to the eyes:
good enough for frontal faces, less precise than RetinaFace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from studio.engines.faces.align import (
    FFHQ_TEMPLATE_512,
    apply_transform,
    similarity_transform,
)
from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

RETINAFACE_NAME = "retinaface-resnet50"
CASCADE_NAME = "lbp-cascade"
RETINAFACE_MAX_SIDE = 1280
CASCADE_MAX_SIDE = 800
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


class CascadeDetector:
    """Offline fallback: scikit-image's bundled LBP frontal-face cascade plus eye localisation.

    The cascade alone fires on some textures, so a candidate counts as a face only when both eye
    regions hold a clearly darker spot at about the same height and, in colour images, enough of
    the box is skin-coloured. The score is the weaker eye's contrast (0..1), a heuristic.
    """

    name = CASCADE_NAME
    min_eye_contrast = 0.35
    min_skin_fraction = 0.4

    def __init__(self) -> None:
        import skimage.data
        from skimage.feature import Cascade

        self._cascade = Cascade(skimage.data.lbp_frontal_face_cascade_filename())

    def detect(self, image: np.ndarray) -> list[Face]:
        scale = _detection_scale(image, CASCADE_MAX_SIDE)
        small = _shrink(image, scale)
        gray = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        limit = min(gray.shape)
        candidates = self._cascade.detect_multi_scale(
            img=gray.astype(np.float64), scale_factor=1.1, step_ratio=1, min_size=(24, 24), max_size=(limit, limit)
        )
        colour = float(np.abs(small - small.mean(axis=2, keepdims=True)).mean()) > 0.01
        faces = []
        for cand in candidates:
            face = self._verify(small, gray, cand["c"], cand["r"], cand["width"], cand["height"], colour)
            if face is not None:
                faces.append(face)
        faces = _non_max_suppression(faces)
        return [
            Face(tuple(_to_source(np.array(f.box), scale).tolist()), f.score, _to_source(f.landmarks, scale), f.detector)
            for f in faces
        ]

    def _verify(
        self, rgb: np.ndarray, gray: np.ndarray, x: int, y: int, w: int, h: int, colour: bool
    ) -> Face | None:
        eyes = []
        for x_expected in (0.3, 0.7):
            found = _find_eye(gray, x + x_expected * w, y + 0.38 * h, w, h)
            if found is None:
                return None
            eyes.append(found)
        (lx, ly, lc), (rx, ry, rc) = eyes
        if min(lc, rc) < self.min_eye_contrast or abs(ly - ry) > 0.12 * h or not (0.25 * w < rx - lx < 0.65 * w):
            return None
        if colour and _skin_fraction(rgb[y : y + h, x : x + w]) < self.min_skin_fraction:
            return None
        # Nose and mouth: where the template puts them once its eyes sit on the found eyes.
        eyes_to_image = similarity_transform(FFHQ_TEMPLATE_512[:2], np.array([[lx, ly], [rx, ry]]))
        landmarks = np.vstack([[lx, ly], [rx, ry], apply_transform(eyes_to_image, FFHQ_TEMPLATE_512[2:])])
        return Face((float(x), float(y), float(x + w), float(y + h)), min(lc, rc), landmarks, self.name)


def _find_eye(gray: np.ndarray, cx: float, cy: float, w: int, h: int) -> tuple[float, float, float] | None:
    """(x, y, contrast) of the eye nearest (cx, cy): the darkest blurred spot, darkness traded against distance.

    The blur is about a pupil-and-lashes wide so eyebrows and hair strands weigh less than the eye;
    contrast = (window median - spot) / window median.
    """
    import cv2

    half_w, half_h = 0.17 * w, 0.13 * h
    ix0, iy0 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
    ix1, iy1 = min(gray.shape[1], int(np.ceil(cx + half_w))), min(gray.shape[0], int(np.ceil(cy + half_h)))
    if ix1 - ix0 < 3 or iy1 - iy0 < 3:
        return None
    sigma = max(w / 40, 0.6)
    pad = int(3 * sigma) + 1
    px0, py0 = max(0, ix0 - pad), max(0, iy0 - pad)
    patch = gray[py0 : min(gray.shape[0], iy1 + pad), px0 : min(gray.shape[1], ix1 + pad)]
    blurred = cv2.GaussianBlur(patch, (0, 0), sigma)[iy0 - py0 : iy1 - py0, ix0 - px0 : ix1 - px0]
    median = float(np.median(blurred))
    rows, cols = np.mgrid[iy0:iy1, ix0:ix1]
    distance = ((cols - cx) / half_w) ** 2 + ((rows - cy) / half_h) ** 2
    cost = blurred + 0.5 * median * distance
    row, col = np.unravel_index(int(np.argmin(cost)), cost.shape)
    contrast = (median - float(blurred[row, col])) / max(median, 1e-6)
    return ix0 + float(col), iy0 + float(row), contrast


def _skin_fraction(rgb: np.ndarray) -> float:
    """Share of pixels in the usual YCrCb skin range (Cr 133..173, Cb 77..127)."""
    import cv2

    ycc = cv2.cvtColor(np.clip(rgb * 255.0, 0, 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def _non_max_suppression(faces: list[Face], overlap: float = 0.3) -> list[Face]:
    """Keep the best-scoring box of each group of boxes overlapping by more than `overlap` (IoU)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(_iou(face.box, other.box) <= overlap for other in kept):
            kept.append(face)
    return kept


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
