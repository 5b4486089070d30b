"""Named conditioning tensors: everything a denoising model reads besides the latent and the time.

An engine puts what its model needs under names: `encoder_hidden_states` (text), `class_labels` (the x4
model's noise level), `text_embeds`/`time_ids` (SDXL's added conditions), `control_0`, `control_1`, ...
(ControlNet images), `low_res` (the x4 model's concatenated image), or anything an adapter defines.
Spatial entries record how many times larger than the latent they are (1: latent-sized, 8: a pixel-space
control image), so latent tiling can cut the matching region with `crop(window)`. A pixel-space entry
may be a `HostPixels` (pixels.py): it stays in host memory and only the cropped window becomes a device
tensor. Classifier-free guidance joins the negative and positive branches key by key with
`Conditioning.batch`.

A conditioned model is `model(x, t, cond, window) -> prediction`; it calls `cond.crop(window)` itself,
because only it knows when the crop is needed (the window is None for the whole latent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Conditioning:
    """Tensors by name (batch first) and, for spatial ones, their size relative to the latent."""

    tensors: Mapping[str, torch.Tensor]
    spatial: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.spatial) - set(self.tensors)
        if unknown:
            raise ValueError(f"spatial keys without tensors: {sorted(unknown)}")

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    def get(self, key: str, default: Any = None) -> Any:
        return self.tensors.get(key, default)

    @property
    def batch_size(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def with_tensors(
        self, tensors: Mapping[str, torch.Tensor], spatial: Mapping[str, int] | None = None
    ) -> Conditioning:
        """A copy with entries added or replaced (spatial factors given for the new spatial ones)."""
        return Conditioning({**self.tensors, **tensors}, {**self.spatial, **(spatial or {})})

    def crop(self, window: Any) -> Conditioning:
        """The spatial entries cut to `window` (a latent-space Window, or None for the whole latent), as
        device tensors."""
        from studio.diffusion.pixels import HostPixels, as_tensor

        if window is None:
            if not any(isinstance(value, HostPixels) for value in self.tensors.values()):
                return self
            return Conditioning({key: as_tensor(value) for key, value in self.tensors.items()}, self.spatial)
        rows, cols = window.slices
        cropped = dict(self.tensors)
        for key, factor in self.spatial.items():
            cropped[key] = self.tensors[key][..., _scaled(rows, factor), _scaled(cols, factor)]
        return Conditioning(cropped, self.spatial)

    def batch(self, other: Conditioning) -> Conditioning:
        """[self, other] concatenated along the batch, key by key (both must have the same keys). A host
        image both sides share stays one host image standing for both."""
        import torch

        from studio.diffusion.pixels import HostPixels, as_tensor

        if set(self.tensors) != set(other.tensors):
            raise ValueError(f"cannot batch conditionings with keys {sorted(self.tensors)} and {sorted(other.tensors)}")
        joined: dict[str, Any] = {}
        for key, value in self.tensors.items():
            theirs = other.tensors[key]
            if isinstance(value, HostPixels) and value is theirs:
                joined[key] = value.repeated(2)
            else:
                joined[key] = torch.cat([as_tensor(value), as_tensor(theirs)])
        return Conditioning(joined, self.spatial)


def _scaled(part: slice, factor: int) -> slice:
    return slice(part.start * factor, part.stop * factor)


ADDED_CONDITIONS = ("text_embeds", "time_ids")
"""SDXL's extra conditions, passed to its UNet and ControlNets as `added_cond_kwargs`."""


def unet_kwargs(cond: Conditioning) -> dict[str, Any]:
    """The keyword arguments a diffusers UNet (or ControlNet) takes from the named tensors."""
    kwargs: dict[str, Any] = {"encoder_hidden_states": cond["encoder_hidden_states"]}
    if "class_labels" in cond:
        kwargs["class_labels"] = cond["class_labels"]
    if all(key in cond for key in ADDED_CONDITIONS):
        kwargs["added_cond_kwargs"] = {key: cond[key] for key in ADDED_CONDITIONS}
    return kwargs
