"""The SD x4 upscaling recipe: the shared `Recipe` with the x4 model's low-res conditioning.

Same steps, order and random draws as diffusers' `StableDiffusionUpscalePipeline`, so with tiling off
the result matches it exactly: check inputs, encode the prompt, noise the low-res image
(`low_res_scheduler` at `noise_level`), prepare latents at the input's size, denoise, decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion.conditioning import Conditioning, unet_kwargs
from studio.diffusion.guidance import ConditionedModel
from studio.diffusion.pixels import image_tensor
from studio.diffusion.recipe import Components, Recipe, Request
from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

    from studio.diffusion.latent_tiling import Window


@dataclass(frozen=True, kw_only=True)
class UpscaleRequest(Request):
    """A recipe request plus the x4 model's noise level (augmentation of the low-res image, 0-350)."""

    noise_level: int


@dataclass
class UpscaleComponents(Components):
    """The modules of a StableDiffusionUpscalePipeline folder."""

    low_res_scheduler: Any
    max_noise_level: int = 350

    @classmethod
    def from_pipeline(cls, pipe: Any) -> UpscaleComponents:
        return cls(
            pipe.vae,
            pipe.text_encoder,
            pipe.tokenizer,
            pipe.unet,
            pipe.scheduler,
            pipe.low_res_scheduler,
            int(pipe.config.get("max_noise_level", 350)),
        )

    @property
    def size_multiple(self) -> int:
        """Input sides must divide by the UNet's total downsampling, or skip connections misalign."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)


class UpscalePipeline(Recipe):
    """SD x4: latents at the input's size, the noised low-res image concatenated to the UNet input."""

    components: UpscaleComponents

    @property
    def size_multiple(self) -> int:
        return self.components.size_multiple

    def check_inputs(self, image: np.ndarray, request: UpscaleRequest) -> None:  # type: ignore[override]
        super().check_inputs(image, request)
        if not 0 <= request.noise_level <= self.components.max_noise_level:
            raise UsageError(f"--noise-level {request.noise_level}: expected 0 to {self.components.max_noise_level}")

    def prepare_conditioning(  # type: ignore[override]
        self,
        image: np.ndarray,
        request: UpscaleRequest,
        cond: Conditioning,
        uncond: Conditioning,
        generator: torch.Generator,
    ) -> tuple[Conditioning, Conditioning]:
        """`low_res`: the image in [-1, 1] noised by the low-res scheduler at the noise level, which also
        goes to the UNet as its class label (`class_labels`)."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        dtype = cond["encoder_hidden_states"].dtype
        low_res = image_tensor(image, self.device, dtype) * 2.0 - 1.0
        level = torch.tensor([request.noise_level], dtype=torch.long, device=self.device)
        noise = randn_tensor(low_res.shape, generator=generator, device=self.device, dtype=dtype)
        extra = {"low_res": self.components.low_res_scheduler.add_noise(low_res, noise, level), "class_labels": level}
        return cond.with_tensors(extra, {"low_res": 1}), uncond.with_tensors(extra, {"low_res": 1})

    def latent_size(self, image: np.ndarray) -> tuple[int, int]:
        return image.shape[0], image.shape[1]

    def conditioned_model(self, request: UpscaleRequest) -> ConditionedModel:  # type: ignore[override]
        """The x4 UNet: the matching crop of the noised low-res image is concatenated to the latent channels."""
        import torch

        unet = self.components.unet

        def model(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, window: Window | None) -> torch.Tensor:
            cond = cond.crop(window)
            inputs = torch.cat([x, cond["low_res"]], dim=1)
            return unet(inputs, t, **unet_kwargs(cond), return_dict=False)[0]

        return model
