"""diffusers `ControlNetModel`s steering a UNet (SD 1.5/2.x and SDXL; one or several at once).

How an engine uses it: put each control image, in [0, 1] at pixel resolution, in the conditioning as
`control_<i>` with spatial factor = the VAE's scale (so latent tiling crops it per tile), and build the
model with `controlled_unet(unet, controlnets, scales)`. The default `Recipe` does both when its
components carry ControlNets (the input image as control image, e.g. for tile ControlNets). SDXL's
`text_embeds`/`time_ids` reach the ControlNets and the UNet through `unet_kwargs`.

A scale may be a number or a function of the timestep tensor, so it can change per step (e.g. SUPIR's
linear control scale). Several ControlNets add their residuals, as diffusers' MultiControlNet does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from studio.diffusion.conditioning import Conditioning, unet_kwargs
from studio.diffusion.guidance import ConditionedModel, Scale, scale_at

if TYPE_CHECKING:
    import torch

    from studio.diffusion.latent_tiling import Window


def control_key(index: int) -> str:
    """The conditioning name of the `index`-th ControlNet's control image."""
    return f"control_{index}"


def controlled_unet(unet: Any, controlnets: Sequence[Any], scales: Sequence[Scale]) -> ConditionedModel:
    """The UNet with every ControlNet's residuals (times its scale at t) added to its skip connections."""
    if len(scales) != len(controlnets):
        raise ValueError(f"{len(scales)} scales for {len(controlnets)} ControlNets")

    def model(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, window: Window | None) -> torch.Tensor:
        cond = cond.crop(window)
        kwargs = unet_kwargs(cond)
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for index, (controlnet, scale) in enumerate(zip(controlnets, scales)):
            control = cond[control_key(index)].to(controlnet.dtype)
            net_down, net_mid = controlnet(
                x, t, controlnet_cond=control, conditioning_scale=scale_at(scale, t), return_dict=False, **kwargs
            )
            down = list(net_down) if down is None else [a + b for a, b in zip(down, net_down)]
            mid = net_mid if mid is None else mid + net_mid
        return unet(
            x, t, down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs, return_dict=False
        )[0]

    return model
