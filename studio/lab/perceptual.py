"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

The `lpips` package ships its linear layers; its AlexNet backbone is torchvision's ImageNet model,
which studio keeps as the registry entry `lpips-alexnet` in the weights folder instead of letting
torchvision download it at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio import weights
from studio.errors import EnvironmentProblem, WeightsMissing

BACKBONE = "lpips-alexnet"
LpipsFn = Callable[[np.ndarray, np.ndarray], float]


def backbone_path() -> Path:
    """The AlexNet weights file; WeightsMissing (naming `studio weights pull lpips-alexnet`) when absent."""
    return weights.resolve(BACKBONE, "backbone")


def _backbone_keys() -> dict[str, list[str]]:
    """LPIPS-Alex's five slices hold AlexNet.features layers 0, 3, 6, 8 and 10 (the convolutions)."""
    return {str(index): [f"features.{index}.weight", f"features.{index}.bias"] for index in (0, 3, 6, 8, 10)}


def build_lpips(backbone_state: dict[str, Any], device: str = "cpu") -> LpipsFn:
    """LPIPS-Alex with the package's linear layers and the convolutions of a torchvision AlexNet state dict.

    Tests pass a randomly initialised AlexNet's state: that checks the wiring, not the metric's values.
    """
    import warnings

    import torch

    for keys in _backbone_keys().values():
        missing = [key for key in keys if key not in backbone_state]
        if missing:
            raise WeightsMissing(
                f"the LPIPS backbone lacks {missing[0]}; is it torchvision's AlexNet? "
                f"run `studio weights pull {BACKBONE}`"
            )
    try:
        import lpips
    except ImportError:
        raise EnvironmentProblem("LPIPS needs the `lpips` package: pip install lpips") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about the legacy `pretrained` argument lpips uses
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    for block in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for index, layer in block.named_children():  # lpips names each layer by its index in AlexNet.features
            if index in _backbone_keys():
                weight, bias = _backbone_keys()[index]
                layer.load_state_dict({"weight": backbone_state[weight], "bias": backbone_state[bias]})
    model = model.eval().to(device)

    def distance(result: np.ndarray, reference: np.ndarray) -> float:
        def tensor(image: np.ndarray) -> torch.Tensor:
            array = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
            return torch.from_numpy(array)[None].to(device) * 2.0 - 1.0

        with torch.inference_mode():
            return float(model(tensor(result), tensor(reference)).item())

    return distance


def load_lpips(device: str = "cpu") -> LpipsFn:
    """LPIPS with the real backbone from the weights folder."""
    import torch

    state = torch.load(backbone_path(), map_location="cpu", weights_only=True)
    return build_lpips(state, device)
