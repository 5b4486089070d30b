"""Face restoration networks (GFPGAN, CodeFormer, RestoreFormer) loaded through spandrel.

spandrel's default call for GFPGAN and CodeFormer passes the [0, 1] image straight through, but
both networks were trained on [-1, 1] inputs and produce [-1, 1] outputs. So studio never uses the
descriptor's default call: it calls each network itself with the range and arguments it was trained
with (CodeFormer's fidelity weight `w`, GFPGAN's stored noise for reproducible results).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

ARCH_FOR_FACES = {"gfpgan": "GFPGAN", "codeformer": "CodeFormer", "restoreformer": "RestoreFormer"}
"""--faces choice -> the spandrel architecture id its weights must have."""

DEFAULT_MODEL = {"gfpgan": "gfpgan-1.4", "codeformer": "codeformer", "restoreformer": "restoreformer"}
"""--faces choice -> registry name used when --face-model is not given."""


def install_extra_architectures() -> None:
    """Register spandrel_extra_arches (CodeFormer lives there) with spandrel's main registry, once."""
    import spandrel_extra_arches

    spandrel_extra_arches.install(ignore_duplicates=True)


class FaceNetwork:
    """A loaded face network; call it on an aligned 512x512 RGB face in [0, 1]."""

    def __init__(self, model: torch.nn.Module, arch: str, device: torch.device) -> None:
        self.model = model
        self.arch = arch
        self.device = device

    @classmethod
    def load(cls, path: Path, faces: str, device: torch.device) -> FaceNetwork:
        """Load `path` with spandrel and check it is the architecture `--faces` asked for."""
        import spandrel

        install_extra_architectures()
        try:
            descriptor = spandrel.ModelLoader(device="cpu").load_from_file(path)
        except spandrel.UnsupportedModelError:
            expected = ARCH_FOR_FACES[faces]
            raise UsageError(f"{path}: not a model spandrel recognises; expected {expected} weights") from None
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            first_line = (str(exc).splitlines() or [""])[0]
            raise UsageError(f"{path}: cannot read the weights file ({type(exc).__name__}: {first_line})") from None
        arch = descriptor.architecture.id
        expected = ARCH_FOR_FACES[faces]
        if arch != expected:
            hint = next((name for name, a in ARCH_FOR_FACES.items() if a == arch), None)
            fix = f"use --faces {hint}" if hint else "pass a face restoration model"
            raise UsageError(f"{path}: a {arch} model, but --faces {faces} needs {expected} weights; {fix}")
        model = descriptor.model.to(device).eval()
        return cls(model, arch, device)

    def __call__(self, face: np.ndarray, fidelity: float = 0.5) -> np.ndarray:
        """Restore one aligned face (512, 512, 3) float32 in [0, 1]; returns the same shape and range."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(face, dtype=np.float32)).permute(2, 0, 1)[None]
        x = x.to(self.device) * 2.0 - 1.0
        with torch.inference_mode():
            y = self._forward(x, fidelity)
        y = ((y.float().clamp(-1.0, 1.0) + 1.0) / 2.0)[0].permute(1, 2, 0)
        return y.cpu().numpy().astype(np.float32)

    def _forward(self, x: torch.Tensor, fidelity: float) -> torch.Tensor:
        out: Any
        if self.arch == "CodeFormer":
            out = self.model(x, weight=float(fidelity))
        elif self.arch == "GFPGAN":
            out = self.model(x, return_rgb=False, randomize_noise=False)
        else:
            out = self.model(x)
        return out[0]
