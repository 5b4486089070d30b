"""Pixel images that stay in host memory and reach the device one window at a time.

A large restore holds a few full-size pixel images (the stage-1 image, control images, the image CFW
fuses). Copied whole to the device they grow device memory with the output's size, and guidance doubled
them again; tiled VAE passes and latent tiles only ever read one window. `HostPixels` wraps the caller's
(H, W, 3) float array and indexes like the (B, 3, H, W) tensor it stands for: `pixels[..., rows, cols]`
converts just that window, in the same operations and dtype as a whole-image conversion, so tiled and
untiled runs see identical values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class HostPixels:
    """An (H, W, 3) image in [0, 1] read as a (batch, 3, H, W) tensor on `device` in `dtype`; `signed` maps
    it to [-1, 1] (what a VAE reads), otherwise values stay in [0, 1] (a ControlNet's control image)."""

    image: np.ndarray
    device: Any
    dtype: Any
    signed: bool = False
    batch: int = 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 3, *self.image.shape[:2])

    def __getitem__(self, index: Any) -> torch.Tensor:
        """`[..., rows, cols]` (slices, as tensor indexing would take them) -> that window as a tensor."""
        if not (isinstance(index, tuple) and len(index) == 3 and index[0] is Ellipsis):
            raise TypeError(f"HostPixels takes [..., rows, cols], got {index!r}")
        return self.window(index[1], index[2])

    def window(self, rows: slice = slice(None), cols: slice = slice(None)) -> torch.Tensor:
        import torch

        part = torch.from_numpy(np.asarray(self.image)[rows, cols]).permute(2, 0, 1)
        pixels = torch.empty((1, *part.shape), device=self.device, dtype=self.dtype)
        pixels[0].copy_(part)
        if self.signed:
            pixels.mul_(2.0).sub_(1.0)
        return pixels.expand(self.batch, -1, -1, -1) if self.batch > 1 else pixels

    def whole(self) -> torch.Tensor:
        return self.window()

    def repeated(self, times: int) -> HostPixels:
        """The same image standing for a batch `times` as large (guidance's two branches)."""
        return replace(self, batch=self.batch * times)


def control_pixels(image: np.ndarray, device: Any, dtype: Any, tiled: bool) -> HostPixels | torch.Tensor:
    """A pixel-space control image for the conditioning: left in host memory when latent tiles will read
    windows of it; converted once when the whole latent runs at once (a `HostPixels` would then be converted
    whole again at every step)."""
    pixels = HostPixels(image, device, dtype)
    return pixels if tiled else pixels.whole()


def as_tensor(source: Any) -> torch.Tensor:
    """A tensor as is; `HostPixels` converted whole."""
    return source.whole() if isinstance(source, HostPixels) else source


def image_tensor(image: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 3) array -> (1, 3, H, W) tensor with the same values."""
    return HostPixels(image, device, dtype).whole()
