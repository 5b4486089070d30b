"""Weighted averages of several models' outputs, taken in linear light.

Averaging sRGB-encoded values darkens edges and fine texture (the mean of two encoded values is darker
than the encoding of their mean light), so outputs are decoded to linear light (IEC 61966-2-1 curve),
averaged, and encoded back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve on values in [0, 1]."""
    import torch

    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding curve on values in [0, 1]."""
    import torch

    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def normalised(weights: Sequence[float]) -> list[float]:
    """Weights scaled to sum to one (the blend is an average whatever numbers were given)."""
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"blend weights must be >= 0 with a positive sum, got {list(weights)}")
    return [float(w) / total for w in weights]


def blend_linear(outputs: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The weighted mean of same-shape sRGB tensors in [0, 1], computed in linear light."""
    if len(outputs) != len(weights) or not outputs:
        raise ValueError(f"blend_linear: {len(outputs)} outputs for {len(weights)} weights")
    total = None
    for output, weight in zip(outputs, normalised(weights)):
        term = srgb_to_linear(output.float().clamp(0.0, 1.0)) * weight
        total = term if total is None else total + term
    return linear_to_srgb(total)
