"""The SD x4 upscaling recipe on diffusers components, with tiling and guidance as wrappers.

Same steps, order and random draws as diffusers' `StableDiffusionUpscalePipeline`, so with tiling off
the result matches it: check inputs, encode the prompt, noise the low-res conditioning
(`low_res_scheduler` at `noise_level`), prepare latents, denoise (progress per step), decode.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.engines.base import ProgressFn
from studio.engines.diffusion import tiled_vae
from studio.engines.diffusion.guidance import ConditionedModel, guided
from studio.engines.diffusion.latent_tiling import Window, tiled_denoiser
from studio.engines.diffusion.offload import Placement
from studio.engines.diffusion.schedulers import make_scheduler
from studio.errors import InputError, UsageError
from studio.messages import warn

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class UpscaleRequest:
    """One call's parameters, already resolved from settings."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    noise_level: int
    seed: int
    scheduler: str | None
    unet_tile: int  # latent pixels; 0: whole latent at once
    tile_overlap: int
    vae_tile: int  # latent pixels; 0: decode in one pass
    vae_pad: int = 16


@dataclass
class UpscaleComponents:
    """The diffusers modules the recipe needs (as found in a StableDiffusionUpscalePipeline folder)."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    unet: Any
    scheduler: Any
    low_res_scheduler: Any
    max_noise_level: int = 350

    @classmethod
    def from_pipeline(cls, pipe: Any) -> UpscaleComponents:
        return cls(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler,
                   pipe.low_res_scheduler, int(pipe.config.get("max_noise_level", 350)))

    @property
    def size_multiple(self) -> int:
        """Input sides must divide by the UNet's total downsampling, or skip connections misalign."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)


def check_inputs(image: np.ndarray, request: UpscaleRequest, components: UpscaleComponents) -> None:
    """Precise errors before any tensor work: name the value, what was given and what is expected."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image of shape {image.shape}: expected (height, width, 3) RGB")
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values")
    multiple = components.size_multiple
    if image.shape[0] % multiple or image.shape[1] % multiple:
        raise InputError(f"image {image.shape[1]}x{image.shape[0]}: sides must be multiples of {multiple}")
    if not 0 <= request.noise_level <= components.max_noise_level:
        raise UsageError(f"--noise-level {request.noise_level}: expected 0 to {components.max_noise_level}")
    if request.steps < 1:
        raise UsageError(f"--steps {request.steps}: expected at least 1")
    if request.guidance < 0:
        raise UsageError(f"--guidance {request.guidance}: expected 0 or more (1 or less turns guidance off)")
    if request.unet_tile and request.tile_overlap >= request.unet_tile:
        raise UsageError(f"--tile-overlap {request.tile_overlap}: must be smaller than --tile {request.unet_tile}")


class UpscalePipeline:
    """Runs the recipe on loaded components placed by a `Placement` (device and offload mode)."""

    def __init__(self, components: UpscaleComponents, placement: Placement, dtype: torch.dtype) -> None:
        import torch

        self.components = components
        self.placement = placement
        self.device = placement.device
        self.dtype = dtype
        if dtype == torch.float16 and getattr(components.vae.config, "force_upcast", False):
            components.vae.to(dtype=torch.float32)  # the VAE overflows in fp16 (diffusers' force_upcast rule)
        placement.prepare([components.text_encoder, components.unet, components.vae])

    def __call__(self, image: np.ndarray, request: UpscaleRequest, progress: ProgressFn | None = None) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1] -> (4H, 4W, 3) float32 in [0, 1]."""
        import torch

        check_inputs(image, request, self.components)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        with torch.no_grad():
            cond, uncond = self.encode_prompt(request.prompt, request.negative_prompt, request.guidance > 1.0)
            low_res, noise_level = self.prepare_conditioning(image, request.noise_level, generator, cond.dtype)
            scheduler = make_scheduler(request.scheduler, self.components.scheduler)
            scheduler.set_timesteps(request.steps, device=self.device)
            latents = self.prepare_latents(low_res.shape[-2:], scheduler, generator, cond.dtype)
            with self.placement.using(self.components.unet):
                model = self.low_res_conditioned_unet(low_res, noise_level)
                denoiser = guided(model, cond, uncond, request.guidance)
                if request.unet_tile:
                    denoiser = tiled_denoiser(denoiser, *latents.shape[-2:], request.unet_tile, request.tile_overlap)
                latents = self.denoise(latents, scheduler, denoiser, generator, progress)
            with self.placement.using(self.components.vae):
                result = self.decode(latents, request.vae_tile, request.vae_pad)
        if progress is not None:
            total = len(scheduler.timesteps) + 1
            progress(total, total)
        return result

    def encode_prompt(self, prompt: str, negative: str, with_negative: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP hidden states for the prompt and (when guidance is on) the negative prompt, as diffusers does."""
        tokenizer, encoder = self.components.tokenizer, self.components.text_encoder
        with self.placement.using(encoder):
            cond = self._encode(tokenizer, encoder, prompt, tokenizer.model_max_length, warn_truncation=True)
            uncond = self._encode(tokenizer, encoder, negative, cond.shape[1]) if with_negative else cond
        return cond, uncond

    def _encode(self, tokenizer: Any, encoder: Any, text: str, length: int, warn_truncation: bool = False) -> Any:
        tokens = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        if warn_truncation and len(tokenizer(text).input_ids) > length:
            warn(f"the prompt is longer than {length} tokens; CLIP ignores the rest")
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.device)
        hidden = encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return hidden.to(dtype=encoder.dtype, device=self.device)

    def prepare_conditioning(
        self, image: np.ndarray, noise_level: int, generator: torch.Generator, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The low-res image in [-1, 1], noised by the low-res scheduler at `noise_level` (the model's
        augmentation level, also passed to the UNet as its class label)."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        low_res = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None] * 2.0 - 1.0
        low_res = low_res.to(device=self.device, dtype=dtype)
        level = torch.tensor([noise_level], dtype=torch.long, device=self.device)
        noise = randn_tensor(low_res.shape, generator=generator, device=self.device, dtype=dtype)
        return self.components.low_res_scheduler.add_noise(low_res, noise, level), level

    def prepare_latents(
        self, size: Any, scheduler: Any, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        channels = self.components.vae.config.latent_channels
        latents = randn_tensor((1, channels, *size), generator=generator, device=self.device, dtype=dtype)
        return latents * scheduler.init_noise_sigma

    def low_res_conditioned_unet(self, low_res: torch.Tensor, noise_level: torch.Tensor) -> ConditionedModel:
        """The x4 UNet as a conditioned model: the matching crop of the noised low-res image is concatenated
        to the latent channels and the noise level goes in as the class label."""
        import torch

        unet = self.components.unet

        def model(x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, window: Window | None) -> Any:
            crop = low_res if window is None else low_res[..., window.slices[0], window.slices[1]]
            batch = x.shape[0]
            inputs = torch.cat([x, crop.expand(batch, -1, -1, -1)], dim=1)
            return unet(inputs, t, encoder_hidden_states=embeds, class_labels=noise_level.expand(batch),
                        return_dict=False)[0]

        return model

    def denoise(
        self, latents: torch.Tensor, scheduler: Any, denoiser: Any, generator: torch.Generator,
        progress: ProgressFn | None,
    ) -> torch.Tensor:
        """The visible loop: scale input, predict, step; progress(done, total) after each step."""
        step_kwargs = _step_kwargs(scheduler, generator)
        timesteps = scheduler.timesteps
        total = len(timesteps) + 1  # the last unit is decoding
        for index, t in enumerate(timesteps):
            prediction = denoiser(scheduler.scale_model_input(latents, t), t, None)
            latents = scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]
            if progress is not None:
                progress(index + 1, total)
        return latents

    def decode(self, latents: torch.Tensor, tile: int, pad: int) -> np.ndarray:
        """Latents (cast to the VAE's dtype) / scaling factor -> image, tiled when `tile` > 0."""
        vae = self.components.vae
        weight_dtype = next(iter(vae.post_quant_conv.parameters())).dtype if vae.post_quant_conv else vae.dtype
        scaled = latents.to(weight_dtype) / vae.config.scaling_factor
        return tiled_vae.decode(vae, scaled, tile, pad)


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    """eta=0 and the generator for schedulers that take them (DDIM, DDPM, ancestral), as diffusers passes."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
