"""What the generator is trained against: pixels (L1), VGG features (perceptual) and a U-Net critic (GAN).

The weights follow Real-ESRGAN's x4plus GAN fine-tuning: L1 1.0, perceptual 1.0 over VGG19's conv1_2,
conv2_2 (0.1 each), conv3_4, conv4_4 and conv5_4 (1.0 each) on ImageNet-normalised input, GAN 0.1 with a
U-Net discriminator whose convolutions carry spectral normalisation. The VGG backbone is torchvision's
ImageNet VGG19, kept as the registry entry `vgg19` and never downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from studio import weights
from studio.errors import WeightsMissing

VGG_BACKBONE = "vgg19"
VGG_LAYERS = {2: 0.1, 7: 0.1, 16: 1.0, 25: 1.0, 34: 1.0}
"""Index in VGG19's `features` of conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 (before their ReLU) -> weight."""
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_backbone_path() -> Path:
    """The VGG19 weights file; WeightsMissing (naming `studio weights pull vgg19`) when absent."""
    return weights.resolve(VGG_BACKBONE, "backbone")


class PerceptualLoss(nn.Module):
    """L1 between VGG19 feature maps of the result and the target, summed over the chosen layers."""

    def __init__(self, features_state: dict[str, Any]) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        layers = make_layers(cfgs["E"], batch_norm=False)[: max(VGG_LAYERS) + 1]
        state = {key.removeprefix("features."): value for key, value in features_state.items()}
        wanted = layers.state_dict().keys()
        missing = [key for key in wanted if key not in state]
        if missing:
            raise WeightsMissing(
                f"the VGG19 backbone lacks features.{missing[0]}; is it torchvision's VGG19? "
                f"run `studio weights pull {VGG_BACKBONE}`"
            )
        layers.load_state_dict({key: state[key] for key in wanted})
        self.layers = layers.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, result: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        both = (torch.cat([result, target]) - self.mean) / self.std
        loss = result.new_zeros(())
        for index, layer in enumerate(self.layers):
            both = layer(both)
            if index in VGG_LAYERS:
                mine, theirs = both.chunk(2)
                loss = loss + VGG_LAYERS[index] * F.l1_loss(mine, theirs.detach())
        return loss


def load_perceptual(path: Path | None = None) -> PerceptualLoss:
    """The perceptual loss with the real VGG19 from the weights folder (or `path`), read without pickled code."""
    state = torch.load(path or vgg_backbone_path(), map_location="cpu", weights_only=True)
    return PerceptualLoss({k: v for k, v in state.items() if k.startswith("features.")})


class UNetDiscriminator(nn.Module):
    """A per-pixel real/fake critic: three strided downsamplings, three upsamplings with skip connections.

    Judging every pixel rather than the whole crop gives the generator local feedback on texture, which is
    what Real-ESRGAN's fine-tuning relies on; spectral normalisation keeps the critic's gradients tame.
    """

    def __init__(self, channels: int = 3, features: int = 64) -> None:
        super().__init__()
        f = features

        def sn_conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
            return spectral_norm(
                nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 if stride == 1 else 1, bias=False)
            )

        self.first = nn.Conv2d(channels, f, 3, 1, 1)
        self.down = nn.ModuleList([sn_conv(f, 2 * f, 4, 2), sn_conv(2 * f, 4 * f, 4, 2), sn_conv(4 * f, 8 * f, 4, 2)])
        self.up = nn.ModuleList([sn_conv(8 * f, 4 * f), sn_conv(4 * f, 2 * f), sn_conv(2 * f, f)])
        self.refine = nn.Sequential(sn_conv(f, f), nn.LeakyReLU(0.2), sn_conv(f, f), nn.LeakyReLU(0.2))
        self.last = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = [F.leaky_relu(self.first(image), 0.2)]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), 0.2))
        x = skips.pop()
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(x), 0.2) + skips.pop()
        return self.last(self.refine(x))


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The vanilla (binary cross-entropy) GAN loss Real-ESRGAN uses, per pixel."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
