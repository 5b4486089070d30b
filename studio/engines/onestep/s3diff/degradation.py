"""S3Diff's degradation estimator: how blurred and how noisy the low-quality input is, as two scores in [0, 1].

The network (DEResNet, from MM-RealSR, as S3Diff ships it in `de_net.pth`) has one branch per
degradation kind: a 3x3 convolution, eight residual blocks without normalisation (the third stage ends in
a stride-2 convolution that widens the features), global average pooling and a two-layer head ending in a
sigmoid. It reads the input at its own size, before any resizing. The module names match the file's keys,
so its state dict loads as is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

KINDS = ("blur", "noise")
"""The degradations scored, in the order of the estimator's outputs."""
BLOCKS_PER_STAGE = 2
STAGES = 4
DOWNSCALE_STAGE = 2
"""Stage whose blocks are followed by the stride-2 convolution (the only width change)."""
HEAD_WIDTH = 512


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, added to the input (no normalisation, residual scale 1)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def _branch_body(width: int, last_width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for stage in range(STAGES):
        stage_width = width if stage <= DOWNSCALE_STAGE else last_width
        layers.extend(ResidualBlock(stage_width) for _ in range(BLOCKS_PER_STAGE))
        if stage == DOWNSCALE_STAGE:
            layers.append(nn.Conv2d(width, last_width, 3, 2, 1))
    return nn.Sequential(*layers)


class DegradationEstimator(nn.Module):
    """Scores each degradation kind of an image in [0, 1]: `forward((B, 3, H, W) in [0, 1]) -> (B, kinds)`."""

    def __init__(self, width: int = 64, last_width: int = 128, kinds: int = len(KINDS)) -> None:
        super().__init__()
        self.conv_first = nn.ModuleList(nn.Conv2d(3, width, 3, 1, 1) for _ in range(kinds))
        self.body = nn.ModuleList(_branch_body(width, last_width) for _ in range(kinds))
        self.fc_degree = nn.ModuleList(
            nn.Sequential(
                nn.Linear(last_width, HEAD_WIDTH), nn.ReLU(inplace=True), nn.Linear(HEAD_WIDTH, 1), nn.Sigmoid()
            )
            for _ in range(kinds)
        )

    @classmethod
    def for_state(cls, state: dict[str, Any]) -> DegradationEstimator:
        """The estimator whose widths the file's tensors have (toy files load like the real one)."""
        first = state.get("conv_first.0.weight")
        head = state.get("fc_degree.0.0.weight")
        if first is None or head is None:
            raise KeyError("conv_first.0.weight" if first is None else "fc_degree.0.0.weight")
        kinds = sum(1 for key in state if key.startswith("conv_first.") and key.endswith(".weight"))
        return cls(width=int(first.shape[0]), last_width=int(head.shape[1]), kinds=kinds)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scores = []
        for first, body, head in zip(self.conv_first, self.body, self.fc_degree):
            features = body(first(image)).mean(dim=(2, 3))
            scores.append(head(features).squeeze(-1))
        return torch.stack(scores, dim=1)
